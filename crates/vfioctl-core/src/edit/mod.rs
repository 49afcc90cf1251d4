//! Surgical edits of the files `vfioctl apply` changes. Each editor is a pure function
//! from the file's current text (or `None` when it does not exist) to its new text:
//! comments, quoting style and unrelated settings are kept; applying the same change
//! twice gives the same text as applying it once.

pub mod cmdline;

/// Kernel command line parameters to add and remove (a plan's `kernel_cmdline`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdlineEdit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Why a file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{what}: {reason}")]
    Unsupported { what: String, reason: String },
}

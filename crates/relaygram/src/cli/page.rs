//! Page options shared by every list command (the CLI's own and the features').

use clap::Args;

use crate::store::Page;

/// Page options for list commands.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Page size (1-200).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// Cursor printed by the previous page.
    #[arg(long)]
    pub after: Option<String>,
}

impl PageArgs {
    pub(crate) fn page(&self) -> Page {
        Page {
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

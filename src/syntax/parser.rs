//! The pest parser. pest lives in this module and in `lower.rs` only.

use pest_derive::Parser;

/// The parser generated from `grammar/rules.pest`.
#[derive(Parser)]
#[grammar = "grammar/rules.pest"]
pub(crate) struct RulesParser;

pub(crate) mod fixtures;
pub(crate) mod process;
pub(crate) mod receiver;

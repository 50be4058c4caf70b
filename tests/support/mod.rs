pub(crate) mod process;
pub(crate) mod receiver;

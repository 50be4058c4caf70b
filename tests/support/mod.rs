pub(crate) mod receiver;

pub(crate) mod browser;
pub(crate) mod data;
pub(crate) mod fixtures;
pub(crate) mod http;
pub(crate) mod nats;
pub(crate) mod process;
pub(crate) mod receiver;
pub(crate) mod report;

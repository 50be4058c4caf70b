//! Nothing here: see benches/parse.rs.

//! rrdcached through its own protocol.
pub mod reply;
pub mod template;

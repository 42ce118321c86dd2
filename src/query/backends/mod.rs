//! Drivers, one folder per backend.
pub mod influxdb;
pub mod rrdcached;

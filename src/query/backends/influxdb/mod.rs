//! InfluxDB 1.x through InfluxQL on `/query`.
pub mod influxql;
pub mod response;

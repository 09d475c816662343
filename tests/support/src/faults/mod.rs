//! Faults between a controller and the API server, for tests of what a controller survives:
//! [`tcp::TcpProxy`] cuts connections and partitions; [`http::HttpFaults`] answers chosen calls
//! with errors or delays them. Stopping and restarting the API server or etcd themselves is
//! [`crate::ControlPlane::stop`] and [`crate::ControlPlane::start_again`].

pub mod http;
pub mod tcp;

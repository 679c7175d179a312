//! Bytes on the wire: the bounded line codec, TLS configuration, the reloadable
//! server certificate, development certificates.

pub mod certs;
mod codec;
pub mod reload;
pub mod tls;

pub use codec::{InboundLine, LineCodec, LineReader};

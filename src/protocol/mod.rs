//! The PostgreSQL v3 wire protocol, as far as a proxy needs it.
//!
//! Messages the proxy must understand get a type with `decode`/`encode`; everything it only
//! relays stays an opaque [`Frame`] (tag + body as `Bytes`). All byte-level knowledge of the
//! protocol lives here, so the rest of the crate never writes `buf[0] == b'Q'`.

mod backend;
mod error;
mod frame;
mod frontend;
mod startup;
mod violation;

pub use backend::*;
pub use error::{PgError, Severity};
pub use frame::{Frame, FrameDecoder, HEADER_LEN};
pub use frontend::*;
pub use startup::{StartupPacket, CANCEL_CODE, GSSENC_CODE, PROTOCOL_3_0, SSL_CODE};
pub use violation::ProtocolError;

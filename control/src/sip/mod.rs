//! SIP for the B2BUA, sans-IO: messages (parsed with `rsip`, which stays inside this module),
//! stream framing for TCP/TLS, RFC 3261 transactions and the layer that holds them. Sockets and timers live elsewhere; these
//! take bytes and time and return what to send and when to wake up.
//!
//! Not built yet: dialogs, the call state machine, transports and their wiring (see README).

pub mod framing;
pub mod layer;
pub mod message;
pub mod transaction;

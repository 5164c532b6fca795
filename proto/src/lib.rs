//! `mediator-proto`: the gRPC API of Mediator — the `.proto` files under `mediator/` and the Rust
//! code tonic-prost-build generates from them at build time (descriptors compiled by protox, never a
//! system `protoc`). It holds no logic: conversions to domain types live in the crates that own them.
//! The `grpc` feature (default) adds the tonic clients and servers; without it only the messages
//! are built, on prost alone.

/// `mediator.dataplane.v1`: what mediator-control (or anyone) uses to program a media relay.
pub mod dataplane {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mediator.dataplane.v1.rs"));

        /// SRTP keys never reach a log through `Debug`: only the suite and the key lengths.
        impl std::fmt::Debug for SrtpSpec {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SrtpSpec")
                    .field("suite", &self.suite)
                    .field("peer_key", &format_args!("<{} bytes>", self.peer_key.len()))
                    .field("peer_mki_length", &self.peer_mki_length)
                    .field(
                        "relay_key",
                        &format_args!("<{} bytes>", self.relay_key.len()),
                    )
                    .field("relay_mki_length", &self.relay_mki_length)
                    .field("peer_key_pending", &self.peer_key_pending)
                    .finish()
            }
        }

        /// The one `SocketAddr` → `Endpoint` conversion. The other way is the dataplane's input
        /// validation (it names the field that is wrong), in `mediator-dataplane`'s service.
        impl From<std::net::SocketAddr> for Endpoint {
            fn from(a: std::net::SocketAddr) -> Endpoint {
                Endpoint {
                    address: a.ip().to_string(),
                    port: u32::from(a.port()),
                }
            }
        }
    }
}

/// `mediator.control.v1`: the topology API of mediator-control, used by mediatorctl.
pub mod control {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mediator.control.v1.rs"));
    }
}

/// The encoded `FileDescriptorSet` of every Mediator service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mediator_descriptor.bin"));

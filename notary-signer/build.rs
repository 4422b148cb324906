//! Generates the tonic client and server code for Notary's two gRPC services from a
//! description in Rust (no protoc needed). The messages are hand-written prost structs
//! in `src/proto.rs` with Go's field numbers.
use tonic_build::manual::{Builder, Method, Service};

fn method(name: &str, route: &str, input: &str, output: &str) -> Method {
    Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::proto::{input}"))
        .output_type(format!("crate::proto::{output}"))
        .codec_path("tonic_prost::ProstCodec")
        .build()
}

fn main() {
    let key_management = Service::builder()
        .name("KeyManagement")
        .package("proto")
        .method(method(
            "create_key",
            "CreateKey",
            "CreateKeyRequest",
            "PublicKey",
        ))
        .method(method("delete_key", "DeleteKey", "KeyId", "Void"))
        .method(method(
            "get_key_info",
            "GetKeyInfo",
            "KeyId",
            "GetKeyInfoResponse",
        ))
        .build();
    let signer = Service::builder()
        .name("Signer")
        .package("proto")
        .method(method("sign", "Sign", "SignatureRequest", "Signature"))
        .build();
    Builder::new().compile(&[key_management, signer]);
    println!("cargo::rerun-if-changed=build.rs");
}

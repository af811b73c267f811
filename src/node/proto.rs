//! Code generated from `proto/` at build time (see `build.rs`): etcd's v3 API (`etcdserverpb`,
//! `mvccpb`) and conflux's peer service.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's key-value messages.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's v3 client API.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// conflux's member-to-member service.
pub mod peer {
    tonic::include_proto!("conflux.peer.v1");
}

//! # conflux-loadgen
//!
//! Drives any etcd v3 cluster — conflux or etcd itself — with closed- or open-loop load, measures
//! latency without coordinated omission, and reports in text, JSON, HdrHistogram, CSV and SVG;
//! `compare` turns two reports into a CI gate. Usage and report schema: `docs/loadgen.md`.

pub mod charts;
pub mod compare;
pub mod dist;
pub mod embedded;
pub mod history;
pub mod linearizability;
pub mod op;
pub mod record;
pub mod report;
pub mod run;
pub mod target;
pub mod verify;
pub mod workload;

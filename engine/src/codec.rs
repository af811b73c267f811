//! How Raft types become bytes. The engine is generic over any openraft `RaftTypeConfig`; the
//! caller supplies a [`RaftCodec`] for its entry, vote and log id types. [`PostcardCodec`] works
//! for any type config whose types implement serde.

use std::marker::PhantomData;

use openraft::RaftTypeConfig;
use openraft::alias::{LogIdOf, VoteOf};

/// An encoding or decoding failure, with the codec's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Encodes and decodes the Raft types the engine stores.
///
/// Encoders append to `out`; decoders get exactly the bytes an encoder produced (checksums have
/// already been verified) and must not panic on any input.
pub trait RaftCodec<C: RaftTypeConfig>: Send + Sync + 'static {
    /// Append the encoding of `entry` to `out`.
    ///
    /// # Errors
    /// When the entry cannot be encoded.
    fn encode_entry(entry: &C::Entry, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// The exact number of bytes [`RaftCodec::encode_entry`] appends for `entry`. The store
    /// checks every entry of an append with it before anything is placed, then encodes straight
    /// into the buffers it hands to the writer; an encoder that writes another length poisons
    /// the store. The default encodes into a scratch buffer; override it where the size is
    /// cheaper to compute.
    ///
    /// # Errors
    /// When the entry cannot be encoded.
    fn encoded_len(entry: &C::Entry) -> Result<usize, CodecError> {
        let mut scratch = Vec::new();
        Self::encode_entry(entry, &mut scratch)?;
        Ok(scratch.len())
    }
    /// Decode an entry.
    ///
    /// # Errors
    /// When `bytes` is not an encoded entry.
    fn decode_entry(bytes: &[u8]) -> Result<C::Entry, CodecError>;
    /// Append the encoding of a vote.
    ///
    /// # Errors
    /// When it cannot be encoded.
    fn encode_vote(vote: &VoteOf<C>, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decode a vote.
    ///
    /// # Errors
    /// When `bytes` is not an encoded vote.
    fn decode_vote(bytes: &[u8]) -> Result<VoteOf<C>, CodecError>;
    /// Append the encoding of a log id.
    ///
    /// # Errors
    /// When it cannot be encoded.
    fn encode_log_id(log_id: &LogIdOf<C>, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decode a log id.
    ///
    /// # Errors
    /// When `bytes` is not an encoded log id.
    fn decode_log_id(bytes: &[u8]) -> Result<LogIdOf<C>, CodecError>;
}

/// A [`RaftCodec`] using postcard (compact, varint-based serde format) for any type config whose
/// entry, vote and log id implement serde.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostcardCodec<C>(PhantomData<fn() -> C>);

fn enc<T: serde::Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let taken = std::mem::take(out);
    match postcard::to_extend(v, taken) {
        Ok(b) => {
            *out = b;
            Ok(())
        }
        Err(e) => Err(CodecError(e.to_string())),
    }
}

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    let (v, rest) = postcard::take_from_bytes(b).map_err(|e| CodecError(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError(format!("{} trailing bytes after the value", rest.len())));
    }
    Ok(v)
}

impl<C> RaftCodec<C> for PostcardCodec<C>
where
    C: RaftTypeConfig,
    C::Entry: serde::Serialize + serde::de::DeserializeOwned,
    VoteOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    LogIdOf<C>: serde::Serialize + serde::de::DeserializeOwned,
{
    fn encode_entry(entry: &C::Entry, out: &mut Vec<u8>) -> Result<(), CodecError> {
        enc(entry, out)
    }
    fn encoded_len(entry: &C::Entry) -> Result<usize, CodecError> {
        // A walk of the value without writing it: for byte strings it only adds up lengths.
        postcard::experimental::serialized_size(entry).map_err(|e| CodecError(e.to_string()))
    }
    fn decode_entry(bytes: &[u8]) -> Result<C::Entry, CodecError> {
        dec(bytes)
    }
    fn encode_vote(vote: &VoteOf<C>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        enc(vote, out)
    }
    fn decode_vote(bytes: &[u8]) -> Result<VoteOf<C>, CodecError> {
        dec(bytes)
    }
    fn encode_log_id(log_id: &LogIdOf<C>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        enc(log_id, out)
    }
    fn decode_log_id(bytes: &[u8]) -> Result<LogIdOf<C>, CodecError> {
        dec(bytes)
    }
}

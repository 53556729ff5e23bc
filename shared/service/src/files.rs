//! Reading a file the archive stores, as a stream of byte ranges pulled from
//! `archive.file-chunk` a few at a time: `api` streams downloads this way and the gateway
//! streams library files to printers, so neither ever holds a whole file.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use printyard_contracts::archive::{self, ChunkRequest, FileLocation, MAX_CHUNK_BYTES};

use crate::rpc::RpcClient;

/// The bytes of `location`, in ranges of `chunk` bytes (at most [`MAX_CHUNK_BYTES`]) with
/// `in_flight` ranges requested ahead. A range that fails or comes back short ends the stream
/// with an error: the reader never sees a silently truncated file.
pub fn object_stream(
    rpc: RpcClient,
    location: &FileLocation,
    chunk: u64,
    in_flight: usize,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let chunk = chunk.clamp(1, MAX_CHUNK_BYTES);
    let key = location.key.clone();
    let size = location.size;
    let ranges = (0..size.div_ceil(chunk)).map(move |i| {
        let offset = i * chunk;
        (offset, chunk.min(size - offset))
    });
    futures::stream::iter(ranges)
        .map(move |(offset, len)| {
            let rpc = rpc.clone();
            let request = ChunkRequest {
                key: key.clone(),
                offset,
                len,
            };
            async move {
                let bytes = rpc
                    .call_bytes(archive::FILE_CHUNK, &request)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, offset, "file read cut short");
                        std::io::Error::other(e.to_string())
                    })?;
                if bytes.len() as u64 != len {
                    return Err(std::io::Error::other("short read from archive storage"));
                }
                Ok(bytes)
            }
        })
        .buffered(in_flight.max(1))
}

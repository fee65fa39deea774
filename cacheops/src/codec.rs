//! MessagePack encoding of cached results.
//!
//! Compact (positional) encoding: the key already fingerprints the result type's
//! shape (`protocol/shape.rs`), so field names need not travel with every row. A payload
//! that fails to decode is reported as `None`: the caller treats it as a miss.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Encodes a result for the cache.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| {
        Error::new(ErrorKind::Encode, "could not encode a result for the cache").with_source(e)
    })
}

/// Decodes a cached result; `None` if the bytes are not a `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match rmp_serde::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(error = %e, "cacheops: undecodable cache entry treated as a miss");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let rows = vec![
            (1i32, "a".to_string(), None::<i64>),
            (2, "b".into(), Some(3)),
        ];
        let bytes = encode(&rows).unwrap();
        assert_eq!(
            decode::<Vec<(i32, String, Option<i64>)>>(&bytes),
            Some(rows)
        );
        assert_eq!(decode::<Vec<(i32, String)>>(&[0xc1, 0xff, 0x00]), None);
        assert_eq!(decode::<i64>(&bytes), None);
    }
}

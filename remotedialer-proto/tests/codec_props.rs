//! Property tests of the codec: every message we can build survives a round
//! trip, lengths are exact, and no input makes decoding panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use proptest::prelude::*;
use remotedialer_proto::frame::{
    Body, CLIENT_READ_LIMIT, CONNECT_READ_LIMIT, ConnId, ERROR_READ_LIMIT, Message, SyncIds,
};
use remotedialer_proto::varint;

fn bytes_up_to(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// A Connect target as Go reads it back: the proto has no `/`, and
/// `proto/address` fits the 266-byte read limit. The address may hold `/`.
fn connect_body() -> impl Strategy<Value = Body> {
    prop::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 0..=80)
        .prop_flat_map(|proto| {
            let room = CONNECT_READ_LIMIT - 1 - proto.len();
            (Just(proto), prop::collection::vec(any::<u8>(), 0..=room))
        })
        .prop_map(|(proto, address)| Body::Connect {
            proto: Bytes::from(proto),
            address: Bytes::from(address),
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        bytes_up_to(2048).prop_map(Body::Data),
        connect_body(),
        bytes_up_to(ERROR_READ_LIMIT).prop_map(Body::Error),
        bytes_up_to(CLIENT_READ_LIMIT).prop_map(Body::AddClient),
        bytes_up_to(CLIENT_READ_LIMIT).prop_map(Body::RemoveClient),
        Just(Body::Pause),
        Just(Body::Resume),
        prop::collection::vec(any::<i64>(), 0..32)
            .prop_map(|ids| Body::SyncConnections(SyncIds::from_ids(ids.into_iter().map(ConnId)))),
        (
            any::<i64>().prop_filter("not a known type", |c| !(1..=8).contains(c)),
            bytes_up_to(256)
        )
            .prop_map(|(code, payload)| Body::Unknown { code, payload }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<i64>(), any::<i64>(), body()).prop_map(|(id, conn_id, body)| Message {
        id,
        conn_id: ConnId(conn_id),
        body,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn message_round_trips(msg in message()) {
        let wire = msg.to_bytes();
        prop_assert_eq!(wire.len(), msg.encoded_len());
        let mut appended = b"prefix".to_vec();
        msg.encode(&mut appended);
        prop_assert_eq!(&appended[6..], wire.as_ref());
        prop_assert!(msg.header_len() <= wire.len());
        let back = Message::decode(wire.clone());
        prop_assert_eq!(back.as_ref(), Ok(&msg));
        prop_assert_eq!(back.unwrap().to_bytes(), wire);
    }

    #[test]
    fn decode_never_panics_and_is_stable(input in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(msg) = Message::decode(Bytes::from(input.clone())) {
            prop_assert!(msg.encoded_len() <= input.len() + varint::MAX_LEN * 4);
            let again = Message::decode(msg.to_bytes());
            prop_assert_eq!(again, Ok(msg));
        }
    }

    /// Structured garbage: a valid header of any type followed by any bytes,
    /// so decoding gets past the varints and into every payload rule.
    #[test]
    fn decode_of_any_payload_never_panics(
        id in any::<i64>(),
        conn_id in any::<i64>(),
        code in -2i64..12,
        deadline in any::<i64>(),
        payload in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut input = Vec::new();
        varint::put(&mut input, id);
        varint::put(&mut input, conn_id);
        varint::put(&mut input, code);
        if code == 1 || code == 2 {
            varint::put(&mut input, deadline);
        }
        input.extend_from_slice(&payload);
        if let Ok(msg) = Message::decode(Bytes::from(input)) {
            let header = (msg.id, msg.conn_id, msg.message_type().code());
            prop_assert_eq!(header, (id, ConnId(conn_id), code));
            prop_assert_eq!(Message::decode(msg.to_bytes()), Ok(msg));
        }
    }

    #[test]
    fn varint_round_trips(value in any::<i64>()) {
        let mut buf = Vec::new();
        varint::put(&mut buf, value);
        prop_assert_eq!(buf.len(), varint::encoded_len(value));
        prop_assert!(buf.len() <= varint::MAX_LEN);
        prop_assert_eq!(varint::get(&buf), Ok((value, buf.len())));
        // Trailing bytes are left alone.
        buf.extend_from_slice(&[0xff, 0x00]);
        prop_assert_eq!(varint::get(&buf), Ok((value, buf.len() - 2)));
    }

    #[test]
    fn varint_get_never_panics(input in prop::collection::vec(any::<u8>(), 0..16)) {
        if let Ok((value, used)) = varint::get(&input) {
            prop_assert!((1..=varint::MAX_LEN).contains(&used) && used <= input.len());
            // Non-minimal encodings are accepted; ours is never longer.
            prop_assert!(varint::encoded_len(value) <= used);
        }
    }
}

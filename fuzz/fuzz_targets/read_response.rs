//! Any bytes as a response file, for a fixed and a fuzz-chosen request id.
//! `read_response` must never panic, and a success must mean the JSON
//! boolean `true` under the key `success` in an object whose request id,
//! if any, is ours, with no repeated top-level key, which nnf-sos's own
//! decoding also reads as a success for our target.
#![no_main]

use fence_gfs2_recorder::nnf_view;
use fence_gfs2_recorder::protocol::{read_response, ResponseReading};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ID: &str = "12345678-1234-4234-8234-123456789abc";
const TARGET: &str = "compute-node-3";

fuzz_target!(|data: &[u8]| {
    let reading = read_response(data, ID, TARGET);
    if let ResponseReading::Answer(a) = &reading {
        if a.success {
            let v: Value = serde_json::from_slice(data).expect("a success is valid JSON");
            let obj = v.as_object().expect("a success is an object");
            assert!(
                obj.get("success") == Some(&Value::Bool(true)),
                "success without \"success\": true: {obj:?}"
            );
            let nnf = nnf_view::decode(data, &nnf_view::RESPONSE_FIELDS)
                .expect("nnf-sos decodes a success");
            let view = nnf_view::ResponseView::from_fields(&nnf);
            assert!(view.compute_check && view.target == TARGET);
            match obj.get("request_id") {
                None => {}
                Some(Value::String(id)) => assert_eq!(id, ID),
                Some(other) => panic!("success with request_id {other:?}"),
            }
        }
    }
    // The id is part of the input too: the first line, if it is text.
    if let Some(pos) = data.iter().position(|&b| b == b'\n') {
        if let Ok(id) = std::str::from_utf8(&data[..pos]) {
            let _ = read_response(&data[pos + 1..], id, TARGET);
        }
    }
});

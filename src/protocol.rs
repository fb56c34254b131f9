//! Protocol: the request the agent writes and the response it reads, as
//! described by the file contract with the NNF reconciler.

use serde::Serialize;
use serde_json::{Map, Value};

/// Largest response the agent will read (a real one is well under 1 KiB).
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Longest host name accepted as a target (DNS limit).
pub const MAX_TARGET_LEN: usize = 253;

/// The fields of a request, in the order of the file contract.
pub const REQUEST_FIELDS: [&str; 5] = [
    "request_id",
    "timestamp",
    "action",
    "target_node",
    "recorder_node",
];

/// The request file's content.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Request {
    pub request_id: String,
    pub timestamp: String,
    pub action: String,
    pub target_node: String,
    pub recorder_node: String,
}

impl Request {
    /// A new request with a random UUID v4 id, stamped now (UTC, RFC 3339).
    pub fn new(action: &str, target_node: &str, recorder_node: &str) -> Self {
        Request {
            request_id: uuid::Uuid::new_v4().to_string(),
            timestamp: utc_now_rfc3339(),
            action: action.to_string(),
            target_node: target_node.to_string(),
            recorder_node: recorder_node.to_string(),
        }
    }

    /// The file name shared by the request and its response.
    pub fn file_name(&self) -> String {
        file_name_for(&self.request_id)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a request always serializes");
        bytes.push(b'\n');
        bytes
    }
}

pub fn file_name_for(request_id: &str) -> String {
    format!("{request_id}.json")
}

/// `2025-01-10T14:23:15Z`
pub fn utc_now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A response that answers our request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseAnswer {
    pub success: bool,
    pub message: String,
    pub action_performed: Option<String>,
}

/// What a response file's bytes mean for a given request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseReading {
    /// Our answer.
    Answer(ResponseAnswer),
    /// Empty, half-written or not JSON: read again when it changes.
    NotYet(String),
    /// Valid JSON, but another request's answer (or not an answer object).
    NotOurs(String),
}

/// Interprets a response to the request `request_id` for `target`. `success`
/// is true only for the JSON boolean `true` under the exact key `success` (a
/// `status` of `"success"` alone is not enough), and only when nnf-sos reads
/// the same file as a success for `target` too (`checkComputeFenced`: its
/// `target_node` is `target`); anything else is a failure answer.
pub fn read_response(bytes: &[u8], request_id: &str, target: &str) -> ResponseReading {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return ResponseReading::NotYet("response file is empty".into());
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return ResponseReading::NotYet(format!("response is not valid JSON yet ({e})"));
        }
    };
    let Value::Object(obj) = value else {
        return ResponseReading::NotOurs("response is JSON but not an object".into());
    };
    if let Err(e) = serde_json::from_slice::<StrictObject>(bytes) {
        // Which of two values counts is not ours to guess: never success.
        return ResponseReading::Answer(ResponseAnswer {
            success: false,
            message: format!("ambiguous response refused: {e}"),
            action_performed: None,
        });
    }
    match obj.get("request_id") {
        None => {}
        Some(Value::String(id)) if id == request_id => {}
        Some(other) => {
            return ResponseReading::NotOurs(format!(
                "response carries request_id {other} instead of \"{request_id}\""
            ));
        }
    }
    let mut answer = answer_from(&obj);
    if answer.success {
        // nnf-sos matches keys case-insensitively and takes the last one: a
        // `"Success": false` after `"success": true` means not fenced to it.
        // And it counts a success for the node its target_node names only.
        let view = crate::nnf_view::decode(bytes, &crate::nnf_view::RESPONSE_FIELDS)
            .map(|f| crate::nnf_view::ResponseView::from_fields(&f));
        let refusal = match &view {
            Ok(v) if v.compute_check && !v.target_cut && v.target == target => None,
            Ok(v) if v.compute_check => Some(format!(
                "response refused: a success for {}, not for {target}: nnf-sos does not count \
                 it as {target} fenced",
                if v.target.is_empty() {
                    "no target_node".to_string()
                } else {
                    format!("target_node {:?}", crate::journal::escape_line(&v.target))
                }
            )),
            _ => Some(
                "ambiguous response refused: nnf-sos does not read it as a success \
                 (a key differing only in case?)"
                    .into(),
            ),
        };
        if let Some(why) = refusal {
            answer.success = false;
            answer.message = format!("{why}: {}", answer.message);
        }
    }
    ResponseReading::Answer(answer)
}

/// A JSON object whose top level has no repeated key.
struct StrictObject;

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictObject, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                }
                Ok(StrictObject)
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A response counts as success only when `success` is the JSON boolean
/// `true`. Both of the reconciler's shapes carry it (the in-place one has
/// `"status": "success"` as well); a `status` alone decides nothing.
pub fn is_success(obj: &Map<String, Value>) -> bool {
    matches!(obj.get("success"), Some(Value::Bool(true)))
}

fn answer_from(obj: &Map<String, Value>) -> ResponseAnswer {
    let success = is_success(obj);
    let message = match obj.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let action_performed = match obj.get("action_performed") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    ResponseAnswer {
        success,
        message,
        action_performed,
    }
}

/// The target as received (bytes, maybe hostile) as an acceptable host
/// name: valid UTF-8 and accepted by [`validate_target`]. The error says why.
pub fn target_name(raw: &[u8]) -> Result<&str, String> {
    let target = std::str::from_utf8(raw)
        .map_err(|_| "the target node name is not valid UTF-8".to_string())?;
    validate_target(target)?;
    Ok(target)
}

/// Checks a fence target: a host name of letters, digits, `.`, `-`, `_`,
/// 1 to 253 characters, not made only of dots. The error says why.
pub fn validate_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("the target node name is empty".into());
    }
    if target.len() > MAX_TARGET_LEN {
        return Err(format!(
            "the target node name is {} characters long (at most {MAX_TARGET_LEN})",
            target.len()
        ));
    }
    if let Some(bad) = target
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "the target node name contains {bad:?}; only letters, digits, '.', '-' and '_' are allowed"
        ));
    }
    if target.chars().all(|c| c == '.') {
        return Err("the target node name cannot be only dots".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "12345678-1234-4234-8234-123456789abc";

    fn answer(s: &str) -> ResponseAnswer {
        match read_response(s.as_bytes(), ID, "n3") {
            ResponseReading::Answer(a) => a,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn request_is_the_documented_json() {
        let r = Request::new("reboot", "compute-node-3", "rabbit-node-1");
        assert_eq!(
            uuid::Uuid::parse_str(&r.request_id)
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(r.file_name(), format!("{}.json", r.request_id));
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5);
        for k in REQUEST_FIELDS {
            assert!(keys.contains(&k));
        }
        assert!(chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).is_ok());
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn both_real_shapes_are_success() {
        let pretty = format!(
            "{{\n  \"request_id\": \"{ID}\",\n  \"target_node\": \"n3\",\n  \"success\": true,\n  \"message\": \"Successfully fenced node by deleting 1 GFS2 storage groups\",\n  \"action_performed\": \"off\"\n}}"
        );
        let a = answer(&pretty);
        assert!(a.success);
        assert_eq!(a.action_performed.as_deref(), Some("off"));
        let compact = format!(
            r#"{{"request_id":"{ID}","status":"success","target_node":"n3","success":true,"message":"No block storage resources found to fence","action_performed":"off"}}"#
        );
        assert!(answer(&compact).success);
    }

    #[test]
    fn status_success_alone_is_not_success() {
        assert!(!answer(r#"{"status":"success","success":false}"#).success);
        assert!(!answer(r#"{"status":"success"}"#).success);
    }

    #[test]
    fn a_success_nnf_sos_reads_otherwise_is_refused() {
        let a = answer(r#"{"success": true, "SUCCESS": false}"#);
        assert!(!a.success);
        assert!(a.message.contains("nnf-sos"), "{}", a.message);
        assert!(!answer(r#"{"success": true, "Success": "yes"}"#).success);
        assert!(answer(r#"{"target_node": "n3", "success": true, "Success": true}"#).success);
    }

    #[test]
    fn only_true_or_status_success_count() {
        assert!(!answer(r#"{"success": "true"}"#).success);
        assert!(!answer(r#"{"success": 1}"#).success);
        assert!(!answer(r#"{"status": "SUCCESS"}"#).success);
        assert!(!answer(r#"{"success": false, "message": "Partially fenced node"}"#).success);
        assert_eq!(
            answer(r#"{"success": false, "message": "Partially fenced node"}"#).message,
            "Partially fenced node"
        );
        // No request_id: taken as ours (the file name ties it to the request).
        assert!(answer(r#"{"target_node": "n3", "success": true}"#).success);
    }

    #[test]
    fn a_success_for_another_node_or_none_is_refused() {
        for other in [
            r#"{"target_node": "n4", "success": true}"#,
            r#"{"success": true}"#,
            r#"{"target_node": "N3", "success": true}"#,
            r#"{"target_node": "n3", "TARGET_NODE": "n4", "success": true}"#,
        ] {
            let a = answer(other);
            assert!(!a.success, "{other}");
            assert!(a.message.contains("not for n3"), "{}", a.message);
        }
        // Go's rule for the key: any case, the last one wins.
        assert!(answer(r#"{"Target_Node": "n3", "success": true}"#).success);
    }

    #[test]
    fn partial_and_empty_are_not_yet() {
        for s in [
            "",
            "  \n",
            "{\"request_id\": \"",
            "{\"success\": tr",
            "\u{0}",
        ] {
            assert!(
                matches!(
                    read_response(s.as_bytes(), ID, "n3"),
                    ResponseReading::NotYet(_)
                ),
                "{s:?}"
            );
        }
        assert!(matches!(
            read_response(&[0xff, 0xfe, b'{'], ID, "n3"),
            ResponseReading::NotYet(_)
        ));
    }

    #[test]
    fn other_ids_and_non_objects_are_not_ours() {
        let other = r#"{"request_id": "00000000-0000-4000-8000-000000000000", "success": true}"#;
        assert!(matches!(
            read_response(other.as_bytes(), ID, "n3"),
            ResponseReading::NotOurs(_)
        ));
        assert!(matches!(
            read_response(br#"{"request_id": 5, "success": true}"#, ID, "n3"),
            ResponseReading::NotOurs(_)
        ));
        assert!(matches!(
            read_response(b"[true]", ID, "n3"),
            ResponseReading::NotOurs(_)
        ));
        assert!(matches!(
            read_response(b"true", ID, "n3"),
            ResponseReading::NotOurs(_)
        ));
    }

    #[test]
    fn duplicate_keys_are_never_success() {
        let a = answer(r#"{"success": false, "success": true}"#);
        assert!(!a.success);
        assert!(a.message.contains("duplicate key"), "{}", a.message);
        // Nested duplicates do not matter to the decision.
        assert!(answer(r#"{"target_node": "n3", "success": true, "x": {"a": 1, "a": 2}}"#).success);
    }

    #[test]
    fn deep_nesting_does_not_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            read_response(deep.as_bytes(), ID, "n3"),
            ResponseReading::NotYet(_)
        ));
    }

    #[test]
    fn targets() {
        for ok in ["compute-node-3", "n1.example.org", "a_b", "x"] {
            assert!(validate_target(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a b",
            "a;b",
            "$(x)",
            "nöde",
            long.as_str(),
        ] {
            assert!(validate_target(bad).is_err(), "{bad:?}");
        }
        assert!(validate_target(&"a".repeat(253)).is_ok());
        assert_eq!(target_name(b"node-1.example"), Ok("node-1.example"));
        assert_eq!(
            target_name(b"n\xff1"),
            Err("the target node name is not valid UTF-8".to_string())
        );
        assert!(target_name(b"n1/../x").unwrap_err().contains("'/'"));
    }
}

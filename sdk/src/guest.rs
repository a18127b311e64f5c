//! The guest side of the ABI: [`run_json`] does the JSON work around a rule author's function, and
//! [`export_rule!`](crate::export_rule) emits the exports and the `medrl:abi` section.
//!
//! The same `run_json` path runs natively (the rule crate's tests and the native benchmark) and
//! inside WebAssembly, so a golden vector that passes natively passes in the sandbox too.

use crate::abi::{ABI_VERSION, GuestError, RuleInput, RuleOutput, Sample};
use serde::de::DeserializeOwned;

/// Decodes a [`RuleInput`], calls `evaluate`, and encodes its [`RuleOutput`]; any decoding
/// problem becomes a [`GuestError`] document the host reports with the rule's name.
pub fn run_json<P, F>(input: &[u8], evaluate: F) -> Vec<u8>
where
    P: DeserializeOwned,
    F: FnOnce(&Sample, &P) -> RuleOutput,
{
    let output = match serde_json::from_slice::<RuleInput<P>>(input) {
        Ok(input) if input.abi != ABI_VERSION => Err(format!(
            "input speaks ABI `{}`, this rule speaks `{ABI_VERSION}`",
            input.abi
        )),
        Ok(input) => Ok(evaluate(&input.sample, &input.params)),
        Err(e) => Err(format!("cannot decode the rule input: {e}")),
    };
    let encoded = match output {
        Ok(out) => serde_json::to_vec(&out),
        Err(error) => serde_json::to_vec(&GuestError { error }),
    };
    encoded.expect("serialising plain structs of strings and numbers cannot fail")
}

/// Turns `fn(&Sample, &Params) -> RuleOutput` into a `medrl-rule/1` module.
///
/// ```ignore
/// fn evaluate(sample: &medrl_sdk::Sample, params: &Params) -> medrl_sdk::RuleOutput { ... }
/// medrl_sdk::export_rule!(evaluate, Params);
/// ```
///
/// Natively this defines `pub fn evaluate_json(&[u8]) -> Vec<u8>` (for tests and benchmarks).
/// On `wasm32` it also exports `medrl_alloc` and `medrl_evaluate` and writes the `medrl:abi`
/// custom section. Memory is never freed: the host makes a fresh instance per evaluation.
#[macro_export]
macro_rules! export_rule {
    ($evaluate:path, $params:ty) => {
        /// Evaluates one JSON-encoded `RuleInput` and returns the JSON-encoded output.
        pub fn evaluate_json(input: &[u8]) -> ::std::vec::Vec<u8> {
            $crate::guest::run_json::<$params, _>(input, $evaluate)
        }

        #[cfg(target_arch = "wasm32")]
        mod __medrl_rule_exports {
            #[used]
            #[unsafe(link_section = "medrl:abi")]
            static MEDRL_ABI: [u8; 12] = *b"medrl-rule/1";

            #[unsafe(no_mangle)]
            pub extern "C" fn medrl_alloc(len: i32) -> i32 {
                let mut buf = ::std::vec::Vec::<u8>::with_capacity(len.max(0) as usize);
                let ptr = buf.as_mut_ptr();
                ::std::mem::forget(buf);
                ptr as i32
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn medrl_evaluate(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host wrote `len` bytes at `ptr`, an allocation it got from
                // `medrl_alloc(len)` in this same instance.
                let input = unsafe { ::std::slice::from_raw_parts(ptr as *const u8, len as usize) };
                let out = super::evaluate_json(input);
                let (out_ptr, out_len) = (out.as_ptr() as u32, out.len() as u32);
                ::std::mem::forget(out);
                ((out_ptr as i64) << 32) | out_len as i64
            }
        }
    };
}

// The section literal in `export_rule!` must match the ABI constant; a compile-time check keeps
// the two from drifting.
const _: () = {
    let a = ABI_VERSION.as_bytes();
    let b = b"medrl-rule/1";
    assert!(a.len() == b.len());
    let mut i = 0;
    while i < a.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::GuestError;

    fn echo(sample: &Sample, params: &serde_json::Value) -> RuleOutput {
        RuleOutput::score(params["s"].as_f64().unwrap_or(0.0), sample.id.clone())
    }

    #[test]
    fn round_trip_and_errors() {
        let input = br#"{"abi":"medrl-rule/1","sample":{"id":"x","prompt":"","response":"","lang":"en","category":"general","risk":"low"},"params":{"s":0.5}}"#;
        let out: RuleOutput = serde_json::from_slice(&run_json(input, echo)).unwrap();
        assert_eq!((out.score, out.explanation.as_str()), (0.5, "x"));

        let wrong_abi = br#"{"abi":"medrl-rule/2","sample":{"id":"x","prompt":"","response":"","lang":"en","category":"general","risk":"low"},"params":{}}"#;
        let err: GuestError = serde_json::from_slice(&run_json(wrong_abi, echo)).unwrap();
        assert!(err.error.contains("medrl-rule/2"), "{}", err.error);

        let err: GuestError = serde_json::from_slice(&run_json(b"not json", echo)).unwrap();
        assert!(err.error.starts_with("cannot decode"), "{}", err.error);
    }
}

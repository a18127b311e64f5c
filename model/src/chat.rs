//! Chat templates: the Jinja template of `tokenizer_config.json`'s `chat_template`, rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it.
//!
//! What "the way Hugging Face renders it" means here (transformers' `_compile_jinja_template`):
//! `trim_blocks` and `lstrip_blocks` on, no trailing-newline keeping, lenient undefined values,
//! Python string methods on values (`.strip()`, `.startswith()`, `.split()`: minijinja-contrib's
//! pycompat), a `raise_exception(msg)` function, a `tojson` filter that writes non-ASCII text as
//! is (Python's `ensure_ascii=False`) with Python's separators, and the special tokens
//! (`bos_token`, `eos_token`, `pad_token`, `unk_token`) as variables.

use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may accept more).
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: &str) -> Message {
        Message::new("system", content)
    }
    pub fn user(content: &str) -> Message {
        Message::new("user", content)
    }
    pub fn assistant(content: &str) -> Message {
        Message::new("assistant", content)
    }
}

const NAME: &str = "chat_template";

/// A compiled chat template and the special-token variables it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    specials: Vec<(&'static str, String)>,
}

impl ChatTemplate {
    /// Compiles `source`; the error is minijinja's, with the line it points at.
    pub fn new(source: String, specials: Vec<(&'static str, String)>) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| e.to_string())?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source).map_err(|e| format!("{e:#}"))?;
        Ok(ChatTemplate { env, specials })
    }

    /// Renders `messages`; with `add_generation_prompt`, the template's opening of an assistant
    /// turn follows, so the model's next tokens are the answer.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let template = self.env.get_template(NAME).map_err(|e| format!("{e:#}"))?;
        let specials: std::collections::BTreeMap<&str, Value> = self.specials.iter().map(|(k, v)| (*k, Value::from(v.as_str()))).collect();
        let specials = Value::from(specials);
        let ctx = minijinja::context! {
            messages => Serde(messages),
            add_generation_prompt => add_generation_prompt,
            ..specials
        };
        template.render(ctx).map_err(|e| format!("{e:#}"))
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("the chat template raised: {msg}")))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`: `", "` and `": "` between
/// items without an indent, non-ASCII characters unescaped. (minijinja's own `tojson` escapes
/// `<`, `>`, `&` and `'` for HTML, which would change the tokens a model was trained on.)
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    // Serialised straight from the template value, so maps keep their insertion order as a
    // Python dict does.
    let json = value;
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let spaces = vec![b' '; n];
            let mut ser = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(&spaces));
            json.serialize(&mut ser)
        }
        None => json.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PythonFormatter)),
    };
    written.map_err(|e| Error::new(ErrorKind::InvalidOperation, "cannot serialise to JSON").with_source(e))?;
    Ok(Value::from_safe_string(String::from_utf8(out).expect("serde_json writes UTF-8")))
}

/// serde_json's compact output with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// The ChatML template `medrl model init` writes (the layout Qwen models use): each turn is
/// `<|im_start|>{role}\n{content}<|im_end|>\n`, and the generation prompt opens an assistant turn.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}
{%- if message['role'] not in ['system', 'user', 'assistant'] %}
{{- raise_exception('roles are system, user and assistant, not ' + message['role']) }}
{%- endif %}
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- endif %}
";

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML_TEMPLATE.into(), vec![("eos_token", "<|im_end|>".into())]).unwrap()
    }

    #[test]
    fn chatml_renders_turns_and_the_generation_prompt() {
        let msgs = [Message::system("你是一名谨慎的医生。"), Message::user("胸口痛怎么办？")];
        assert_eq!(
            chatml().render(&msgs, true).unwrap(),
            "<|im_start|>system\n你是一名谨慎的医生。<|im_end|>\n<|im_start|>user\n胸口痛怎么办？<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(chatml().render(&msgs[1..], false).unwrap(), "<|im_start|>user\n胸口痛怎么办？<|im_end|>\n");
    }

    #[test]
    fn raise_exception_reaches_the_caller() {
        let err = chatml().render(&[Message::new("tool", "x")], true).unwrap_err();
        assert!(err.contains("the chat template raised: roles are system, user and assistant, not tool"), "{err}");
    }

    /// The constructs Hugging Face templates use: block tags on their own lines (trim_blocks and
    /// lstrip_blocks), Python string methods, `namespace`, `loop` variables, `is defined`,
    /// special-token variables and `tojson`. The expected text is what Python's jinja2 3.1.6
    /// renders with transformers' settings (an `ImmutableSandboxedEnvironment` with trim_blocks and
    /// lstrip_blocks, its `tojson` and `raise_exception`).
    #[test]
    fn hugging_face_template_constructs_render_as_python_jinja_does() {
        let source = r#"{{ bos_token }}
{% set ns = namespace(system='') %}
{% for m in messages %}
    {% if m.role == 'system' %}
        {% set ns.system = m.content.strip() %}
    {% endif %}
{% endfor %}
{% if ns.system %}[SYS]{{ ns.system }}[/SYS]
{% endif %}
{% for m in messages if m.role != 'system' %}
    {% if m.content.startswith('/') %}
        {{ raise_exception('commands are not allowed') }}
    {% endif %}
{{ loop.index }}:{{ m.role.upper() }}:{{ m.content.split(' ')|join('_') }}{% if not loop.last %}|{% endif %}
{% endfor %}
{% if tools is defined %}{{ tools|tojson }}{% endif %}
{{ {'名字': '张三', 'a': [1, 2]}|tojson }}
{{ {'x': 1}|tojson(indent=2) }}"#;
        let specials = vec![("bos_token", "<s>".into()), ("eos_token", "</s>".into())];
        let t = ChatTemplate::new(source.into(), specials).unwrap();
        let msgs = [Message::system("  be brief  "), Message::user("chest pain"), Message::assistant("call 120")];
        assert_eq!(
            t.render(&msgs, false).unwrap(),
            "<s>\n[SYS]be brief[/SYS]\n1:USER:chest_pain|2:ASSISTANT:call_120{\"名字\": \"张三\", \"a\": [1, 2]}\n{\n  \"x\": 1\n}"
        );
        let err = t.render(&[Message::user("/reset")], false).unwrap_err();
        assert!(err.contains("commands are not allowed"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let err = ChatTemplate::new("line one\n{% if x %}\nunclosed".into(), vec![]).err().unwrap();
        assert!(err.contains("unexpected end of input") && err.contains("chat_template:3"), "{err}");
    }
}

//! Streaming: answer text as it is generated, token by token, in server-sent events of
//! OpenAI's chunk shape, ending with `data: [DONE]`.
//!
//! A token is not always whole text: byte-level tokenizers split a Chinese character over two
//! or three tokens, and the prefix decodes to a replacement character (U+FFFD) until the rest
//! arrives. [`IncrementalText`] decodes the whole answer so far at each token and sends only
//! what is settled (nothing that ends in U+FFFD), so the chunks concatenate to the text the
//! non-streamed answer has.

use super::completion::{Answer, Progress};
use super::openai::{Chunk, ResponseHead};
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// The answer's text, released as it settles.
#[derive(Debug, Default)]
pub struct IncrementalText {
    tokens: Vec<u32>,
    /// Bytes of the decoded text already released.
    sent: usize,
}

impl IncrementalText {
    /// Adds a token; returns the newly settled text, if any. `decode` is the tokenizer's decode
    /// of the tokens so far (special tokens left out).
    pub fn push<E>(&mut self, token: u32, decode: impl Fn(&[u32]) -> Result<String, E>) -> Result<Option<String>, E> {
        self.tokens.push(token);
        let text = decode(&self.tokens)?;
        let settled = text.trim_end_matches('\u{FFFD}');
        Ok(self.release(settled))
    }

    /// The rest of the final text (its last characters may have been held back).
    pub fn finish(&mut self, final_text: &str) -> Option<String> {
        self.release(final_text)
    }

    fn release(&mut self, text: &str) -> Option<String> {
        // Text already sent is never taken back; a decode that changed it (no byte-level
        // tokenizer does) sends from where the two differ onward.
        if text.len() <= self.sent || !text.is_char_boundary(self.sent) {
            return None;
        }
        let new = text[self.sent..].to_string();
        self.sent = text.len();
        Some(new)
    }
}

/// The SSE response: the role chunk, a chunk per settled piece of text, the finish chunk with
/// the scores, the usage chunk when asked for, then `[DONE]`. Dropping the response (the client
/// hung up) drops the receiver, which the worker sees and stops generating.
pub fn response(
    head: ResponseHead,
    include_usage: bool,
    progress: mpsc::UnboundedReceiver<Progress>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let event = |chunk: &Chunk| Event::default().data(serde_json::to_string(chunk).expect("a chunk serialises"));
    let first = event(&Chunk::role(&head));
    let rest = futures_util::stream::unfold((progress, false), move |(mut items, done)| {
        let head = head.clone();
        async move {
            if done {
                return None;
            }
            let events = match items.recv().await {
                Some(Progress::Text(text)) => vec![event(&Chunk::text(&head, text))],
                Some(Progress::Started { .. }) => Vec::new(),
                Some(Progress::Done(answer)) => {
                    let Answer { finish, usage, medrl, .. } = *answer;
                    let mut events = vec![event(&Chunk::finish(&head, finish, medrl))];
                    if include_usage {
                        events.push(event(&Chunk::usage(&head, usage)));
                    }
                    events.push(Event::default().data("[DONE]"));
                    return Some((events, (items, true)));
                }
                // After the first byte the status is sent: an error is an event, as OpenAI's.
                Some(Progress::Failed(e)) => {
                    let events = vec![Event::default().data(e.body().to_string()), Event::default().data("[DONE]")];
                    return Some((events, (items, true)));
                }
                None => return None,
            };
            Some((events, (items, false)))
        }
    });
    use futures_util::StreamExt;
    let stream =
        futures_util::stream::once(async move { vec![first] }).chain(rest).flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Sse::new(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder over bytes: token `t` is the byte `t`, decoded lossily as UTF-8, as a
    /// byte-level tokenizer decodes.
    fn decode(tokens: &[u32]) -> Result<String, ()> {
        Ok(String::from_utf8_lossy(&tokens.iter().map(|&t| t as u8).collect::<Vec<_>>()).into_owned())
    }

    #[test]
    fn a_character_split_over_tokens_is_sent_once_it_is_whole() {
        // "胸" is E8 83 B8 in UTF-8; "a" before and "!" after.
        let tokens = [b'a', 0xE8, 0x83, 0xB8, b'!'].map(u32::from);
        let mut text = IncrementalText::default();
        let sent: Vec<Option<String>> = tokens.iter().map(|&t| text.push(t, decode).unwrap()).collect();
        assert_eq!(sent, [Some("a".into()), None, None, Some("胸".into()), Some("!".into())]);
        assert_eq!(text.finish("a胸!"), None);
    }

    #[test]
    fn a_dangling_partial_character_is_released_at_the_end() {
        // The answer stops after two of the three bytes of "胸": the final text ends in U+FFFD
        // and the chunks must still add up to it.
        let mut text = IncrementalText::default();
        let mut all = String::new();
        for t in [b'x', 0xE8, 0x83].map(u32::from) {
            all.extend(text.push(t, decode).unwrap());
        }
        let final_text = decode(&[b'x', 0xE8, 0x83].map(u32::from)).unwrap();
        all.extend(text.finish(&final_text));
        assert_eq!(all, final_text);
        assert_eq!(all, "x\u{FFFD}");
    }
}

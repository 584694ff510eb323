//! Envoy's `x-forwarded-client-cert` (XFCC) header.
//!
//! Envoy terminates mTLS in front of the backend and describes the client certificate in
//! XFCC: one element per proxy hop, separated by `,`; each element is `key=value` pairs
//! separated by `;`; a value that contains `,`, `;` or `=` is double-quoted (with `\"` inside).
//! For example `By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=ab12;URI=spiffe://ztlab.test/ns/demo/sa/frontend`.

use serde::Serialize;

/// One XFCC element: the client certificate one proxy saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct XfccElement {
    /// `By`: the proxy's own identity (the server's SPIFFE ID).
    pub by: Option<String>,
    /// `URI`: the client certificate's URI SAN (the client's SPIFFE ID).
    pub uri: Option<String>,
    /// `Hash`: SHA-256 of the client certificate.
    pub hash: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `DNS` SANs.
    pub dns: Vec<String>,
}

/// Splits `s` on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

/// Parses every element of an XFCC header. Unknown keys are ignored.
pub fn parse(header: &str) -> Vec<XfccElement> {
    split_unquoted(header, ',')
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .map(|element| {
            let mut out = XfccElement::default();
            for pair in split_unquoted(element, ';') {
                let Some((key, value)) = pair.split_once('=') else { continue };
                let value = unquote(value);
                match key.trim().to_ascii_lowercase().as_str() {
                    "by" => out.by = Some(value),
                    "uri" => out.uri = Some(value),
                    "hash" => out.hash = Some(value),
                    "subject" => out.subject = Some(value),
                    "dns" => out.dns.push(value),
                    _ => {}
                }
            }
            out
        })
        .collect()
}

/// The element added by the proxy nearest to the backend (the last one).
pub fn nearest(header: &str) -> Option<XfccElement> {
    parse(header).pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_example() {
        let h = "By=spiffe://ztlab.test/ns/demo/sa/backend;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=spiffe://ztlab.test/ns/demo/sa/frontend";
        let e = nearest(h).expect("element");
        assert_eq!(e.by.as_deref(), Some("spiffe://ztlab.test/ns/demo/sa/backend"));
        assert_eq!(e.uri.as_deref(), Some("spiffe://ztlab.test/ns/demo/sa/frontend"));
        assert!(e.hash.as_deref().is_some_and(|h| h.starts_with("468ed3")));
    }

    #[test]
    fn quoted_values_and_several_hops() {
        let h = r#"By=spiffe://a/x;URI=spiffe://a/first,By=spiffe://a/backend;Subject="CN=frontend,O=ztlab;x=\"y\"";URI=spiffe://a/frontend;DNS=one;DNS=two"#;
        let all = parse(h);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].uri.as_deref(), Some("spiffe://a/first"));
        let e = &all[1];
        assert_eq!(e.by.as_deref(), Some("spiffe://a/backend"));
        assert_eq!(e.subject.as_deref(), Some(r#"CN=frontend,O=ztlab;x="y""#));
        assert_eq!(e.uri.as_deref(), Some("spiffe://a/frontend"));
        assert_eq!(e.dns, vec!["one", "two"]);
    }

    #[test]
    fn garbage_is_harmless() {
        assert!(parse("").is_empty());
        let e = nearest("nonsense;;=;uri").expect("one element");
        assert_eq!(e, XfccElement::default());
        assert_eq!(nearest("uri=spiffe://a/b").and_then(|e| e.uri).as_deref(), Some("spiffe://a/b"));
    }
}

//! Structured JSON logs: one flat JSON object per line on stderr.
//!
//! ```json
//! {"timestamp":"2026-12-06T08:00:00.123456Z","level":"INFO","component":"entry-manager",
//!  "target":"entry_manager::service","message":"request","method":"CreateEntry",
//!  "trace_id":"4bf9…","actor":"apikey:ci"}
//! ```
//!
//! Keys, in this order (so that a `grep`/`sed` over the file can rely on it):
//! - `timestamp` (RFC 3339, UTC), `level`, `component` (the service: on every line, whatever
//!   thread or task logs it), `target` (the Rust module) and `message`;
//! - the fields of every span the event is in, outermost span first, flattened into the line (an
//!   inner span's field replaces an outer one's of the same name, in place). While a request is
//!   served that is its request span: `actor`, `http_method`, `path` and `trace_id` (see
//!   [`crate::request`] and entry-manager's gRPC layer);
//! - the event's own fields, in the order the event names them; one with the name of a span
//!   field replaces that field's value in place.
//!
//! `timestamp`, `level`, `component` and `target` are reserved: a field of one of these names is
//! dropped (it never replaces the service's name). Records of libraries that use the `log` crate
//! get their own module as `target`, without the `log.*` fields that carry it.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Keys every line has, in this order; fields of these names are dropped.
const RESERVED: [&str; 4] = ["timestamp", "level", "component", "target"];

/// Installs the JSON log subscriber on stderr. The filter comes from `RUST_LOG` (default
/// `info`). Every line carries `component`.
pub fn init(component: &'static str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = subscriber(component, filter, std::io::stderr).try_init();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting");
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture it).
fn subscriber<W>(
    component: &'static str,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<JsonFields, FlatJson, tracing_subscriber::EnvFilter, W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson { component })
        .with_env_filter(filter)
        .with_writer(writer)
}

/// The line format (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct FlatJson {
    component: &'static str,
}

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Line::default();
        line.set("timestamp", timestamp.into());
        line.set("level", meta.level().as_str().into());
        line.set("component", self.component.into());
        line.set("target", meta.target().into());
        line.set("message", Value::Null);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&fields.fields) {
                    for (k, v) in fields {
                        if !RESERVED.contains(&k.as_str()) {
                            line.set(&k, v);
                        }
                    }
                }
            }
        }
        event.record(&mut EventFields(&mut line));
        writeln!(writer, "{}", line.to_json())
    }
}

/// The keys and values of one line, in the order they were first set.
#[derive(Debug, Default)]
struct Line(Vec<(String, Value)>);

impl Line {
    /// Sets `key`: replaces its value in place if it is set already, else appends it.
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// The JSON object, in order; a `null` message (an event without one) is left out.
    fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (key, value) in self.0.iter().filter(|(k, v)| !(k == "message" && v.is_null())) {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::String(key.clone()).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }
}

/// Records an event's fields as JSON values.
struct EventFields<'a>(&'a mut Line);

impl EventFields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "log.target" => self.0.set("target", value),
            name if name.starts_with("log.") || RESERVED.contains(&name) => {}
            name => self.0.set(name, value),
        }
    }
}

impl Visit for EventFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or_else(|| value.to_string().into(), Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(f: impl FnOnce()) -> Vec<serde_json::Map<String, Value>> {
        let out = Captured::default();
        let sub = subscriber("svc", tracing_subscriber::EnvFilter::new("info"), out.clone()).finish();
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => m,
                other => panic!("not a JSON object: {l:?} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn every_line_is_flat_json_with_the_component_and_its_request_fields() {
        let got = lines(|| {
            tracing::info!(n = 3, ok = true, ratio = 0.5, "outside");
            let span = tracing::error_span!("request", trace_id = "t1", actor = tracing::field::Empty);
            let _in = span.enter();
            span.record("actor", "spiffe://td/x");
            tracing::warn!(code = ?Some(7), "inside");
            let inner = tracing::info_span!("step", actor = "inner-actor", step = 2);
            let _inner = inner.enter();
            tracing::info!(component = "not-me", trace_id = "event-wins", "nested {}", 1);
        });
        assert_eq!(got.len(), 3, "{got:?}");
        for l in &got {
            assert_eq!(l["component"], "svc", "{l:?}");
            assert!(l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{l:?}");
        }
        assert_eq!(got[0]["message"], "outside");
        assert_eq!((&got[0]["n"], &got[0]["ok"], &got[0]["ratio"]), (&3.into(), &true.into(), &0.5.into()));
        assert!(!got[0].contains_key("trace_id"), "{:?}", got[0]);
        assert_eq!(got[1]["level"], "WARN");
        assert_eq!(
            (&got[1]["trace_id"], &got[1]["actor"], &got[1]["code"]),
            (&"t1".into(), &"spiffe://td/x".into(), &"Some(7)".into())
        );
        assert_eq!(got[2]["message"], "nested 1");
        assert_eq!(
            (&got[2]["actor"], &got[2]["step"], &got[2]["trace_id"]),
            (&"inner-actor".into(), &2.into(), &"event-wins".into())
        );
    }

    #[test]
    fn keys_come_in_a_fixed_order_and_event_fields_as_the_event_names_them() {
        let out = Captured::default();
        let sub = subscriber("svc", tracing_subscriber::EnvFilter::new("info"), out.clone()).finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::error_span!("request", trace_id = "t1", actor = "a1");
            let _in = span.enter();
            tracing::info!(caller = "c", doc = "d", allow = false, reason = "r", "decision");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let line = text.lines().next().expect("a line");
        let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {line}"));
        let order = ["timestamp", "level", "component", "target", "message", "actor", "trace_id", "caller", "doc"];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{line}");
        assert!(line.contains(r#""doc":"d","allow":false,"reason":"r""#), "{line}");
    }

    #[test]
    fn records_of_the_log_crate_keep_their_module_as_target() {
        // What tracing-log makes of a `log` record.
        let got = lines(|| tracing::info!(log.target = "tokio_postgres::query", log.line = 45, "executing"));
        assert_eq!(got[0]["target"], "tokio_postgres::query");
        assert_eq!(got[0]["message"], "executing");
        assert!(!got[0].keys().any(|k| k.starts_with("log.")), "{:?}", got[0]);
    }
}

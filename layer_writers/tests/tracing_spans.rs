//! The write-out of an in-memory layer runs in spans a user can filter on: `in_memory_write_out` (layer
//! name, mode, engine, bytes), inside it `layer_finish` (path, mode, engine, bytes), and the buffer
//! flushes (`flush`, with offset and bytes) under the write-out's span.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use io_engine::{IoEngine, IoEngineKind};
use layer_writers::{InMemoryLayer, Key, Lsn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use virtual_file::{IoContext, IoMode};

/// A span seen: its name, its fields as text, and the names of its ancestors (nearest first).
#[derive(Debug, Clone)]
struct SeenSpan {
    name: &'static str,
    fields: BTreeMap<String, String>,
    ancestors: Vec<&'static str>,
}

struct FieldText<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Records every span (by id) with its fields, including fields recorded later.
#[derive(Clone, Default)]
struct SpanLog(Arc<Mutex<BTreeMap<u64, SeenSpan>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for SpanLog {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldText(&mut fields));
        let ancestors = ctx
            .span(id)
            .map(|s| s.scope().skip(1).map(|p| p.name()).collect())
            .unwrap_or_default();
        let seen = SeenSpan {
            name: attrs.metadata().name(),
            fields,
            ancestors,
        };
        self.0.lock().unwrap().insert(id.into_u64(), seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(seen) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut FieldText(&mut seen.fields));
        }
    }
}

#[test]
fn write_out_runs_in_spans_with_layer_mode_engine_and_bytes() {
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(log.clone());
    let info = tracing::subscriber::with_default(subscriber, || {
        // current-thread runtime: the flush tasks run on this thread, under this subscriber
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let ctx = IoContext::builder()
                    .engine(IoEngine::launch(IoEngineKind::StdFs).unwrap())
                    .mode(IoMode::Buffered)
                    .build()
                    .unwrap();
                let dir = tempfile::tempdir().unwrap();
                let layer = InMemoryLayer::create(&ctx, dir.path(), 1).await.unwrap();
                for i in 0..2000u128 {
                    layer
                        .put_value(Key::from_u128(i), Lsn(1), true, &[7u8; 1000])
                        .await
                        .unwrap();
                }
                layer.freeze().await.unwrap();
                let info = layer
                    .write_to_disk(&ctx, dir.path(), "layer-spans")
                    .await
                    .unwrap();
                layer.remove().await.unwrap();
                info
            })
            .await
            .expect("timed out")
        })
    });

    let spans: Vec<SeenSpan> = log.0.lock().unwrap().values().cloned().collect();
    let one = |name: &str| {
        let found: Vec<&SeenSpan> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
        found[0].clone()
    };
    let out = one("in_memory_write_out");
    assert_eq!(out.fields["layer"], "layer-spans");
    assert_eq!(out.fields["mode"], "buffered");
    assert_eq!(out.fields["engine"], "std-fs");
    assert_eq!(out.fields["entries"], "2000");
    assert_eq!(out.fields["bytes"], info.file_len.to_string());

    let finish = one("layer_finish");
    assert_eq!(finish.ancestors, vec!["in_memory_write_out"]);
    assert!(
        finish.fields["layer"].ends_with("layer-spans"),
        "{finish:?}"
    );
    assert_eq!(finish.fields["mode"], "buffered");
    assert_eq!(finish.fields["engine"], "std-fs");
    assert_eq!(finish.fields["bytes"], info.file_len.to_string());

    // the delta layer's flushes are under the write-out (through the flush task's span)
    let flushes: Vec<&SeenSpan> = spans
        .iter()
        .filter(|s| s.name == "flush" && s.ancestors.contains(&"in_memory_write_out"))
        .collect();
    assert!(
        !flushes.is_empty(),
        "no flush under the write-out: {spans:#?}"
    );
    assert!(flushes
        .iter()
        .all(|f| f.ancestors.first() == Some(&"flush_task") && f.fields.contains_key("bytes")));
    let flushed: u64 = flushes
        .iter()
        .map(|f| f.fields["bytes"].parse::<u64>().unwrap())
        .sum();
    assert!(
        flushed + 8192 >= info.file_len,
        "flushed {flushed} of a {} byte layer (the summary block is written directly)",
        info.file_len
    );
}

//! A shop with its own Tantivy schema gets dense retrieval, hybrid search with a filter, and
//! an in-place fine-tune of its query encoder while it keeps serving searches.
//!
//! ```text
//! cargo run --example shop                                   # tiny random BERT, seconds
//! cargo run --example shop -- --checkpoint .ltre/models/all-MiniLM-L6-v2 --epochs 1
//! cargo run --example shop -- --model DIR                    # an export made with --train
//! ```
//!
//! The walk-through:
//!
//! 1. **Schema.** `sku` (the id: `STRING | FAST`), `title` and `body` (BM25), `category` (a
//!    `STRING` filter field) and the dense field `embedding`, declared with `add_dense_field`.
//! 2. **Encoder registry.** The document encoder is installed in `INDEX/encoders/base` and
//!    activated: documents are embedded by it once; queries are embedded by whichever encoder
//!    is active, which a fine-tune may replace.
//! 3. **Indexing.** `EmbeddingWriter` embeds the built-in catalog in batches.
//! 4. **Hybrid search with a filter**: BM25 on `title`/`body` fused by reciprocal ranks with the
//!    dense query, both restricted to a category ([`hybrid_search`]).
//! 5. **Fine-tune in place** from judged queries with `tantivy_ltre::finetune` while another
//!    thread keeps searching through a `LiveEncoder`, which follows the activation.
//! 6. **Roll back** with `EncoderStore::rollback`; the live encoder follows again.
//!
//! With the tiny random model the numbers mean nothing and the held-out metric may not
//! improve; the demo deploys with `force` so the switch and the rollback can be shown, and
//! prints what actually happened.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ltre::core::encoder::EncoderOptions;
use ltre::core::export::{export_checkpoint, ExportOptions};
use ltre::core::manifest::WordEmbeddingGrad;
use ltre::core::trainer::TrainConfig;
use ltre::core::Encoder;
use ltre::tantivy::encoders::{EncoderStore, BASE_ENCODER};
use ltre::tantivy::finetune::{
    FineTuneEvent, FineTuneOptions, FineTuneOutcome, JudgedQuery, TrainingData, TunableIndex,
};
use ltre::tantivy::lexical::{bag_of_words, IdField};
use ltre::tantivy::live::LiveEncoder;
use ltre::tantivy::{
    add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter, EmbeddingWriter,
    HybridCollector, Rrf,
};
use tantivy::collector::Count;
use tantivy::query::{Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value, FAST, STORED, STRING, TEXT};
use tantivy::{Index, Searcher, TantivyDocument, Term};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The catalog: (item, category, what it is for). Each comes in three variants.
const ITEMS: [(&str, &str, &str); 12] = [
    (
        "hiking boots",
        "outdoor",
        "keeps your feet dry on muddy trails",
    ),
    ("rain jacket", "outdoor", "keeps you dry in a storm"),
    (
        "camping tent",
        "outdoor",
        "sleeps two people under the stars",
    ),
    ("head lamp", "outdoor", "lights the path at night"),
    ("water bottle", "outdoor", "keeps drinks cold all day"),
    (
        "sleeping bag",
        "outdoor",
        "stays warm through freezing nights",
    ),
    ("kettle", "kitchen", "boils water for tea"),
    ("chef knife", "kitchen", "slices vegetables thin"),
    ("coffee grinder", "kitchen", "grinds beans for espresso"),
    ("cast iron pan", "kitchen", "sears steak evenly"),
    ("desk lamp", "office", "gives bright light for late reading"),
    ("office chair", "office", "supports your back all day"),
];
const VARIANTS: [(&str, &str); 3] = [
    ("classic", "a durable everyday model"),
    ("light", "a compact lightweight version for travel"),
    ("pro", "a premium model for experts"),
];

/// The application's index and its fields.
struct Shop {
    dir: PathBuf,
    index: Index,
    dense: DenseField,
    sku: Field,
    title: Field,
    body: Field,
    category: Field,
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let work = tempfile::tempdir()?;
    let model = args.model(work.path())?;
    println!("model: {}", model.display());

    let shop = create_shop(&work.path().join("shop-index"), &model)?;
    let searches = [
        ("something to keep my feet dry", "outdoor"),
        ("make tea in the morning", "kitchen"),
    ];

    // Searches follow the active encoder: `base` now, the fine-tuned one after deployment.
    let live = LiveEncoder::open(&shop.dir, encoder_options(1))?
        .with_check_interval(Duration::from_millis(20));
    let reader = shop.index.reader()?;
    println!(
        "\n== before fine-tuning (query encoder `{}`)",
        live.current_id()
    );
    for (text, category) in searches {
        print_hits(&shop, &reader.searcher(), &live, text, category)?;
    }

    // Fine-tune while a second thread keeps searching.
    let done = AtomicBool::new(false);
    let served: Mutex<BTreeMap<String, usize>> = Mutex::default();
    let failures: Mutex<Vec<String>> = Mutex::default();
    let report = std::thread::scope(|scope| -> Result<_> {
        scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                let (text, category) = searches[n % searches.len()];
                n += 1;
                match search(&shop, &reader.searcher(), &live, text, category, 3) {
                    Ok((id, _)) => *served.lock().unwrap().entry(id).or_default() += 1,
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                // A steady query stream, leaving the cores mostly to training.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut result = fine_tune(&shop, &args);
        if let Ok(Some(id)) = result.as_ref().map(|r| r.deployed_id().map(str::to_string)) {
            // Keep searching until the searcher thread has served with the new encoder.
            if let Err(e) = wait_for(|| served.lock().unwrap().contains_key(&id)) {
                result = Err(e);
            }
        }
        done.store(true, Ordering::SeqCst);
        result
    })?;
    let failures = failures.into_inner().unwrap_or_default();
    let served = served.into_inner().unwrap_or_default();
    println!(
        "\nbackground searches during training and deployment: {} served (by encoder: {served:?}), {} failed",
        served.values().sum::<usize>(),
        failures.len()
    );
    assert!(failures.is_empty(), "searches failed: {failures:?}");

    let store = EncoderStore::new(&shop.dir);
    let Some(id) = report.deployed_id() else {
        println!("nothing deployed: `{}` stays active", store.active_id()?);
        return Ok(());
    };
    wait_for(|| live.get().is_ok() && live.current_id() == id)?;
    println!(
        "\n== after fine-tuning (query encoder `{}`)",
        live.current_id()
    );
    for (text, category) in searches {
        print_hits(&shop, &reader.searcher(), &live, text, category)?;
    }

    let back = store.rollback()?;
    wait_for(|| live.get().is_ok() && live.current_id() == back)?;
    println!(
        "\n== rolled back: `{back}` is active again, the live encoder serves `{}`",
        live.current_id()
    );
    print_hits(
        &shop,
        &reader.searcher(),
        &live,
        searches[0].0,
        searches[0].1,
    )?;
    Ok(())
}

/// Creates the index with the application's schema, registers the document encoder as the
/// active query encoder, and indexes the catalog.
fn create_shop(dir: &Path, model: &Path) -> Result<Shop> {
    let mut encoder = Encoder::load_with(model, encoder_options(0))?;
    let mut builder = Schema::builder();
    let sku = builder.add_text_field("sku", STRING | FAST | STORED);
    let title = builder.add_text_field("title", TEXT | STORED);
    let body = builder.add_text_field("body", TEXT);
    let category = builder.add_text_field("category", STRING | STORED);
    add_dense_field(
        &mut builder,
        "embedding",
        &DenseFieldOptions::new(encoder.dim()),
    );
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema)?;
    std::fs::create_dir_all(dir)?;
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_dir(dir)?;

    let store = EncoderStore::new(dir);
    store.install(BASE_ENCODER, model)?;
    store.activate(BASE_ENCODER)?;

    let mut writer =
        DenseIndexWriter::new(index.writer_with_num_threads(1, 50_000_000)?, dense.clone());
    let mut embedding = EmbeddingWriter::new(&writer, &mut encoder, 16);
    for (i, (item, cat, purpose)) in ITEMS.iter().enumerate() {
        for (variant, description) in VARIANTS {
            let mut doc = TantivyDocument::new();
            let name = format!("{variant} {item}");
            let text = format!("{item}: {description}; {purpose}.");
            doc.add_text(sku, sku_of(i, variant));
            doc.add_text(title, &name);
            doc.add_text(body, &text);
            doc.add_text(category, cat);
            embedding.add(doc, format!("{name}. {text}"))?;
        }
    }
    let added = embedding.finish()?;
    writer.commit()?;
    println!(
        "indexed {} products in {} ({} refused)",
        added.added,
        dir.display(),
        added.rejected.len()
    );
    Ok(Shop {
        dir: dir.to_path_buf(),
        index,
        dense,
        sku,
        title,
        body,
        category,
    })
}

fn sku_of(item: usize, variant: &str) -> String {
    format!("sku-{item:02}-{variant}")
}

/// Judged queries, as an application would collect them (clicks, purchases, editors): per
/// item, a need in other words (all variants relevant) and one query per special variant.
fn judged_queries() -> Vec<JudgedQuery> {
    let mut out = Vec::new();
    for (i, (item, _, purpose)) in ITEMS.iter().enumerate() {
        let all = |q: JudgedQuery| {
            VARIANTS
                .iter()
                .fold(q, |q, (v, _)| q.judge(sku_of(i, v), 1))
        };
        out.push(all(JudgedQuery::new(
            format!("need-{i}"),
            format!("I need something that {purpose}"),
        )));
        out.push(
            all(JudgedQuery::new(
                format!("travel-{i}"),
                format!("compact {item} to take on a trip"),
            ))
            .judge(sku_of(i, "light"), 2),
        );
        out.push(
            all(JudgedQuery::new(
                format!("expert-{i}"),
                format!("best {item} for professionals"),
            ))
            .judge(sku_of(i, "pro"), 2),
        );
    }
    out
}

/// The library call: fine-tune the active encoder on the judged queries, deploy in place.
fn fine_tune(shop: &Shop, args: &Args) -> Result<ltre::tantivy::finetune::FineTuneReport> {
    let index = TunableIndex::new(
        shop.index.clone(),
        shop.dense.clone(),
        IdField::new(&shop.index.schema(), "sku")?,
        &shop.dir,
    )
    .with_lexical_fields(vec![shop.title, shop.body]);
    let mut config = TrainConfig {
        epochs: args.epochs,
        batch_size: 6,
        top_n: 32,
        rr_cut: 32,
        dev_fraction: 0.25,
        ..Default::default()
    };
    config.optimizer.lr = args.lr;
    let data = TrainingData::new(judged_queries());
    // `force`: with a random tiny model the held-out metric may not improve, and the demo
    // wants to show the switch; the report says whether it was forced.
    let options = FineTuneOptions::new(config)
        .deploy(true)
        .force(true)
        .threads(args.threads);
    println!(
        "\n== fine-tuning from {} judged queries",
        data.queries().len()
    );
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let outcome = index.fine_tune(&data, &options, &stop, &mut |event| match event {
        FineTuneEvent::Step { .. } => {}
        other => println!("{other}"),
    })?;
    let FineTuneOutcome::Finished(report) = outcome else {
        return Err("interrupted".into());
    };
    println!("{report}");
    println!(
        "document vectors unchanged: {} ({:.1} s)",
        report.document_vectors_sha256_before == report.document_vectors_sha256_after,
        started.elapsed().as_secs_f64()
    );
    Ok(*report)
}

/// Hybrid search restricted to `category`, with the live query encoder; returns the id of
/// the encoder used and the hits (sku, title).
fn search(
    shop: &Shop,
    searcher: &Searcher,
    live: &LiveEncoder,
    text: &str,
    category: &str,
    k: usize,
) -> Result<(String, Vec<(String, String)>)> {
    let encoder = live.get()?;
    let id = live.current_id();
    let vector = encoder.encode_queries(&[text])?.row(0).to_vec();
    let lexical = bag_of_words(&shop.index, &[shop.title, shop.body], text)?;
    let filter = TermQuery::new(
        Term::from_field_text(shop.category, category),
        IndexRecordOption::Basic,
    );
    let hits = hybrid_search(shop, searcher, &*lexical, &vector, &filter, k)?;
    let mut out = Vec::new();
    for address in hits {
        let doc: TantivyDocument = searcher.doc(address)?;
        let get = |f: Field| {
            doc.get_first(f)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        out.push((get(shop.sku), get(shop.title)));
    }
    Ok((id, out))
}

/// The fused top `k` of the lexical and dense queries within `filter`, as one Tantivy search:
/// the filtered lexical query is what the searcher runs, the collector scores the dense leg per
/// segment and fuses the global ranks; `Count` rides along in the same pass.
fn hybrid_search(
    shop: &Shop,
    searcher: &Searcher,
    lexical: &dyn Query,
    vector: &[f32],
    filter: &dyn Query,
    k: usize,
) -> Result<Vec<tantivy::DocAddress>> {
    let collector = HybridCollector::new(&shop.dense, vector, Rrf::default(), k)?
        .with_filter(filter.box_clone());
    let lexical = collector.filtered_lexical(lexical);
    let (_lexical_matches, hits) = searcher.search(&*lexical, &(Count, collector))?;
    Ok(hits.into_iter().map(|hit| hit.address).collect())
}

fn print_hits(
    shop: &Shop,
    searcher: &Searcher,
    live: &LiveEncoder,
    text: &str,
    category: &str,
) -> Result<()> {
    let (id, hits) = search(shop, searcher, live, text, category, 3)?;
    println!("`{text}` in {category} (encoder `{id}`):");
    for (sku, title) in hits {
        println!("  {sku}  {title}");
    }
    Ok(())
}

/// Waits up to 10 s for `done`.
fn wait_for(mut done: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the live encoder did not follow the activation within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn encoder_options(threads: usize) -> EncoderOptions {
    let mut options = EncoderOptions::default();
    if threads > 0 {
        options.threads = threads;
    }
    options
}

/// Command line: the model to use and the training length.
struct Args {
    model: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    epochs: usize,
    lr: f32,
    threads: usize,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            model: None,
            checkpoint: None,
            epochs: 0,
            lr: 0.0,
            threads: 0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--model" => args.model = Some(value()?.into()),
                "--checkpoint" => args.checkpoint = Some(value()?.into()),
                "--epochs" => args.epochs = value()?.parse()?,
                "--lr" => args.lr = value()?.parse()?,
                "--threads" => args.threads = value()?.parse()?,
                _ => {
                    return Err(format!(
                        "unknown argument `{flag}`; use --model DIR (exported with --train), \
                         --checkpoint DIR (a BERT checkpoint), --epochs N, --lr X, --threads N"
                    )
                    .into())
                }
            }
        }
        let tiny = args.model.is_none() && args.checkpoint.is_none();
        if args.epochs == 0 {
            args.epochs = if tiny { 3 } else { 1 };
        }
        if args.lr == 0.0 {
            // The tiny random model needs big steps to move at all; a real one small ones.
            args.lr = if tiny { 1e-3 } else { 2e-5 };
        }
        Ok(args)
    }

    /// The exported model directory (with training graphs) to use.
    fn model(&self, work: &Path) -> Result<PathBuf> {
        if let Some(dir) = &self.model {
            return Ok(dir.clone());
        }
        if let Some(checkpoint) = &self.checkpoint {
            let out = work.join("model");
            println!(
                "exporting {} with its training graphs",
                checkpoint.display()
            );
            let options = ExportOptions {
                query_max_length: Some(32),
                document_max_length: Some(64),
                train: Some(WordEmbeddingGrad::default()),
                ..Default::default()
            };
            export_checkpoint(checkpoint, &out, &options)?;
            return Ok(out);
        }
        Ok(ltre::core::testing::export_tiny_model(work, 7, true)?)
    }
}

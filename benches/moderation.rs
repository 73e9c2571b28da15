//! Moderation engine benchmark: building the automaton for 10,000 terms, and
//! checking 100,000 realistic messages (~10 MB) including normalisation.
//!
//! Run: `cargo bench --bench moderation`. Everything is generated from a
//! seeded RNG, so runs are comparable.
//!
//! The same workload for the end-to-end figure of `qunyun moderation check`:
//! `QUNYUN_MODERATION_WORKLOAD=DIR cargo bench --bench moderation` writes
//! `DIR/terms.txt` and `DIR/messages.txt` and stops; then
//! `time qunyun moderation check --terms DIR/terms.txt < DIR/messages.txt > /dev/null`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qunyun::rules::moderation::{
    warm_up, Engine, Family, MatchOptions, RegexRuleSpec, RegexRules, Scratch, TermList,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const TERM_COUNT: usize = 10_000;
const MESSAGE_COUNT: usize = 100_000;

/// Common Chinese characters, so generated chat looks like chat to the
/// automaton (many near-misses on term prefixes).
const HANZI: &str = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知己样现很老身把部工们机动想开电品文加微信群领红包免费优惠活动打卡签到积分兑换今天明天大家早上晚上谢谢收到好的没问题请问客服下单快递退货";
const LATIN_WORDS: &[&str] = &[
    "ok", "hello", "thanks", "better", "order", "coupon", "vip", "link", "free", "sale", "wechat",
    "let", "me", "know", "the", "price", "is", "good", "alphabet", "betting",
];
const EMOJI: &[&str] = &[
    "😀", "🌹", "👍", "🎉", "🙏", "❤️", "🔥", "😂", "[微笑]", "[抱拳]",
];
const PUNCT: &[&str] = &["，", "。", "！", "？", "～", " ", "...", "、", "：", "!"];
const URLS: &[&str] = &[
    "https://shop.example.com/item/12345",
    "http://t.cn/A6xYz",
    "www.example.org/promo?id=9",
    "https://t.me/joinchat",
];

fn random_hanzi(rng: &mut StdRng, pool: &[char], len: usize) -> String {
    (0..len)
        .map(|_| pool[rng.gen_range(0..pool.len())])
        .collect()
}

fn random_latin(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect()
}

/// 10,000 terms: mostly 2–6 hanzi, some Latin words, some mixed (`v信`),
/// some with punctuation (`t.me/`).
fn generate_terms(rng: &mut StdRng, pool: &[char]) -> Vec<String> {
    let mut terms = Vec::with_capacity(TERM_COUNT);
    while terms.len() < TERM_COUNT {
        let term = match rng.gen_range(0..10) {
            0..=6 => {
                let len = rng.gen_range(3..=6);
                random_hanzi(rng, pool, len)
            }
            7 => {
                let len = rng.gen_range(4..=9);
                random_latin(rng, len)
            }
            8 => {
                let letters = rng.gen_range(1..=3);
                format!(
                    "{}{}",
                    random_latin(rng, letters),
                    random_hanzi(rng, pool, 2)
                )
            }
            _ => {
                let letters = rng.gen_range(3..=6);
                format!("{}.{}/", random_latin(rng, letters), random_latin(rng, 2))
            }
        };
        terms.push(term);
    }
    terms
}

/// One chat message: Chinese text with punctuation, some English, emoji,
/// sometimes a URL, rarely a banned term spelled with separators.
fn generate_message(rng: &mut StdRng, pool: &[char], terms: &[String]) -> String {
    let mut message = String::new();
    let pieces = rng.gen_range(3..=12);
    for _ in 0..pieces {
        match rng.gen_range(0..20) {
            0..=11 => {
                let len = rng.gen_range(2..=10);
                message.push_str(&random_hanzi(rng, pool, len));
            }
            12..=14 => {
                if let Some(word) = LATIN_WORDS.choose(rng) {
                    message.push(' ');
                    message.push_str(word);
                    message.push(' ');
                }
            }
            15..=16 => message.push_str(EMOJI.choose(rng).copied().unwrap_or_default()),
            17 => {
                if rng.gen_bool(0.3) {
                    message.push_str(URLS.choose(rng).copied().unwrap_or_default());
                    message.push(' ');
                }
            }
            _ => message.push_str(PUNCT.choose(rng).copied().unwrap_or_default()),
        }
    }
    if rng.gen_bool(0.02) {
        if let Some(term) = terms.choose(rng) {
            let spelled: Vec<String> = term.chars().map(String::from).collect();
            message.push_str(&spelled.join(" "));
        }
    }
    message
}

/// CPU time this thread has run, from the Linux scheduler's accounting.
/// The bench machine is shared, so wall time alone understates what one
/// core does; both are printed.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Run `work` `rounds` times; print the fastest and the median round, in
/// wall and CPU time. On a shared machine the fastest round is the closest
/// to what one undisturbed core does.
fn report_cpu_time(label: &str, rounds: usize, bytes: Option<usize>, mut work: impl FnMut()) {
    let mut walls = Vec::with_capacity(rounds);
    let mut cpus = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let wall_start = Instant::now();
        let cpu_start = thread_cpu_time();
        work();
        walls.push(wall_start.elapsed());
        if let (Some(start), Some(end)) = (cpu_start, thread_cpu_time()) {
            cpus.push(end - start);
        }
    }
    walls.sort();
    cpus.sort();
    let rate = |time: Duration| match bytes {
        Some(bytes) => format!(" = {:.0} MB/s", bytes as f64 / time.as_secs_f64() / 1e6),
        None => String::new(),
    };
    let wall_best = walls[0];
    let wall_median = walls[walls.len() / 2];
    eprintln!(
        "{label}: wall best {wall_best:.1?}{}, median {wall_median:.1?}{}",
        rate(wall_best),
        rate(wall_median)
    );
    if let (Some(&cpu_best), Some(&cpu_median)) = (cpus.first(), cpus.get(cpus.len() / 2)) {
        eprintln!(
            "{label}: cpu  best {cpu_best:.1?}{}, median {cpu_median:.1?}{}",
            rate(cpu_best),
            rate(cpu_median)
        );
    }
}

struct Fixture {
    terms: TermList,
    messages: Vec<String>,
    total_bytes: usize,
}

fn fixture() -> Fixture {
    let mut rng = StdRng::seed_from_u64(0x5157_594e);
    let pool: Vec<char> = HANZI.chars().collect();
    let terms = generate_terms(&mut rng, &pool);
    let messages: Vec<String> = (0..MESSAGE_COUNT)
        .map(|_| generate_message(&mut rng, &pool, &terms))
        .collect();
    let total_bytes = messages.iter().map(String::len).sum();
    let source: String = terms.iter().map(|t| format!("{t}\n")).collect();
    let terms = TermList::parse(&source).expect("generated terms are valid");
    Fixture {
        terms,
        messages,
        total_bytes,
    }
}

/// Write the workload for the end-to-end measurement, when asked to.
fn write_workload(dir: &std::path::Path) {
    let mut rng = StdRng::seed_from_u64(0x5157_594e);
    let pool: Vec<char> = HANZI.chars().collect();
    let terms = generate_terms(&mut rng, &pool);
    let messages: Vec<String> = (0..MESSAGE_COUNT)
        .map(|_| generate_message(&mut rng, &pool, &terms))
        .collect();
    std::fs::create_dir_all(dir).expect("workload directory");
    let terms: String = terms.iter().map(|t| format!("{t}\n")).collect();
    let messages: String = messages.iter().map(|m| format!("{m}\n")).collect();
    std::fs::write(dir.join("terms.txt"), terms).expect("terms written");
    std::fs::write(dir.join("messages.txt"), &messages).expect("messages written");
    eprintln!(
        "wrote {TERM_COUNT} terms and {MESSAGE_COUNT} messages ({:.1} MB) to {}",
        messages.len() as f64 / 1e6,
        dir.display()
    );
}

fn bench_moderation(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("QUNYUN_MODERATION_WORKLOAD") {
        write_workload(std::path::Path::new(&dir));
        return;
    }
    let started = Instant::now();
    warm_up();
    eprintln!(
        "process-wide fold table (OpenCC + NFKD, once per process): {:?}",
        started.elapsed()
    );
    let fixture = fixture();
    let allow = TermList::from_terms(["不加微信", "better"]);
    eprintln!(
        "{} terms, {} messages, {:.1} MB",
        fixture.terms.len(),
        fixture.messages.len(),
        fixture.total_bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("moderation");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("build_10k_terms", |b| {
        b.iter(|| {
            Engine::build(black_box(&fixture.terms), &allow, MatchOptions::default())
                .expect("builds")
        })
    });

    let engine =
        Engine::build(&fixture.terms, &allow, MatchOptions::default()).expect("engine builds");
    let mut scratch = Scratch::default();
    let mut hits = Vec::new();
    let mut blocked = 0usize;
    let mut by_family: BTreeMap<Family, usize> = BTreeMap::new();
    for message in &fixture.messages {
        engine.scan_into(message, &mut scratch, &mut hits);
        blocked += usize::from(!hits.is_empty());
        for hit in &hits {
            *by_family.entry(hit.family).or_default() += 1;
        }
    }
    eprintln!("messages with a hit: {blocked}; hits per family: {by_family:?}");

    group.throughput(Throughput::Bytes(fixture.total_bytes as u64));
    group.sample_size(10);
    group.bench_function("check_100k_messages", |b| {
        b.iter(|| {
            let mut blocked = 0usize;
            for message in &fixture.messages {
                engine.scan_into(black_box(message), &mut scratch, &mut hits);
                blocked += usize::from(!hits.is_empty());
            }
            blocked
        })
    });

    let rules = RegexRules::compile(&RegexRuleSpec::presets()).expect("presets compile");
    let with_regex = Engine::build(&fixture.terms, &allow, MatchOptions::default())
        .expect("engine builds")
        .with_regex_rules(rules);
    group.bench_function("check_100k_messages_with_regex_presets", |b| {
        b.iter(|| {
            let mut blocked = 0usize;
            for message in &fixture.messages {
                with_regex.scan_into(black_box(message), &mut scratch, &mut hits);
                blocked += usize::from(!hits.is_empty());
            }
            blocked
        })
    });
    group.finish();

    report_cpu_time("build_10k_terms", 20, None, || {
        black_box(Engine::build(&fixture.terms, &allow, MatchOptions::default()).ok());
    });
    report_cpu_time("check_100k_messages", 20, Some(fixture.total_bytes), || {
        for message in &fixture.messages {
            engine.scan_into(black_box(message), &mut scratch, &mut hits);
        }
    });
    report_cpu_time(
        "check_100k_messages_with_regex_presets",
        10,
        Some(fixture.total_bytes),
        || {
            for message in &fixture.messages {
                with_regex.scan_into(black_box(message), &mut scratch, &mut hits);
            }
        },
    );
}

criterion_group!(benches, bench_moderation);
criterion_main!(benches);

//! Properties of the report merge over the real captures (`tests/fixtures/printers/`):
//!
//! - a printer's next full report, split into deltas any way (each field in one of them, the
//!   deltas in any order, fields that did not change left out or sent again), merged on top of
//!   the report before, gives back that next report and its status;
//! - fields no firmware sends today, anywhere in a report and of any JSON shape, never break
//!   parsing and never change the status;
//! - any JSON in place of a known field never panics the normaliser.

use printyard_bambu::report::{Message, ReportState, parse};
use printyard_bambu::status::normalize;
use proptest::prelude::*;
use serde_json::{Map, Value};

mod support;

/// The captures' full reports, by name.
fn reports() -> Vec<(String, Map<String, Value>)> {
    support::full_reports()
        .into_iter()
        .map(|name| {
            let print = support::full_print(&support::load(&name));
            let Value::Object(print) = print else {
                panic!("{name}: the report is an object")
            };
            (name, print)
        })
        .collect()
}

/// A tiny deterministic generator (xorshift), so a case replays from its seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.roll() % 100 < percent
    }
}

/// The report the printer sends next: some scalar values changed (numbers, strings, booleans,
/// also inside the AMS trays), the structure the same.
fn next_report(value: &mut Value, dice: &mut Dice, percent: u64) {
    match value {
        Value::Object(map) => map
            .iter_mut()
            .filter(|(k, _)| k.as_str() != "id")
            .for_each(|(_, v)| next_report(v, dice, percent)),
        Value::Array(items) => items.iter_mut().for_each(|v| next_report(v, dice, percent)),
        Value::Number(n) if dice.chance(percent) => {
            *value = match n.as_i64() {
                Some(i) => Value::from(i.wrapping_add((dice.roll() % 7) as i64 + 1)),
                None => Value::from(n.as_f64().unwrap_or(0.0) + 0.5),
            }
        }
        Value::String(s) if dice.chance(percent) => s.push('x'),
        Value::Bool(b) if dice.chance(percent) => *b = !*b,
        _ => {}
    }
}

/// The report as deltas: every top-level field, and every field of a nested object, goes to
/// one of `parts` deltas (arrays go whole); unchanged fields may be left out.
fn split(
    next: &Map<String, Value>,
    before: &Map<String, Value>,
    parts: usize,
    dice: &mut Dice,
) -> Vec<Map<String, Value>> {
    let mut deltas = vec![Map::new(); parts];
    scatter(next, Some(before), &mut deltas, dice);
    deltas
}

fn scatter(
    next: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    deltas: &mut [Map<String, Value>],
    dice: &mut Dice,
) {
    let parts = deltas.len();
    for (key, value) in next {
        let old = before.and_then(|b| b.get(key));
        if old == Some(value) && dice.chance(50) {
            continue;
        }
        match (value, old) {
            (Value::Object(inner), Some(Value::Object(old_inner))) if dice.chance(70) => {
                // The object's fields spread over the deltas, each under the same key.
                let mut nested = vec![Map::new(); parts];
                scatter(inner, Some(old_inner), &mut nested, dice);
                for (delta, part) in deltas.iter_mut().zip(nested) {
                    if !part.is_empty() {
                        delta.insert(key.clone(), Value::Object(part));
                    }
                }
            }
            _ => {
                let i = (dice.roll() % parts as u64) as usize;
                deltas[i].insert(key.clone(), value.clone());
            }
        }
    }
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Puts `extra` into a nested object of `value` chosen by `dice` (or the top), under a name no
/// firmware uses.
fn insert_somewhere(map: &mut Map<String, Value>, extra: Value, dice: &mut Dice, n: usize) {
    let objects: Vec<String> = map
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(k, _)| k.clone())
        .collect();
    if !objects.is_empty() && dice.chance(50) {
        let key = &objects[(dice.roll() % objects.len() as u64) as usize];
        if let Some(Value::Object(inner)) = map.get_mut(key) {
            return insert_somewhere(inner, extra, dice, n);
        }
    }
    map.insert(format!("zz_unknown_{n}"), extra);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_of_the_next_report_merges_back_to_it(
        report in 0usize..16,
        seed in 1u64..u64::MAX,
        percent in 0u64..60,
        parts in 1usize..6,
    ) {
        let reports = reports();
        let (name, before) = &reports[report % reports.len()];
        let mut dice = Dice(seed);
        let mut next = Value::Object(before.clone());
        next_report(&mut next, &mut dice, percent);
        let Value::Object(next) = next else { unreachable!() };
        let deltas = split(&next, before, parts, &mut dice);

        let mut state = ReportState::default();
        state.apply(true, before);
        for delta in &deltas {
            state.apply(false, delta);
        }
        prop_assert_eq!(state.fields(), &next, "{}", name);
        prop_assert_eq!(
            normalize(state.fields(), None, None),
            normalize(&next, None, None),
            "{}", name
        );

        // Through the wire: each delta as the payload a printer sends.
        let mut wired = ReportState::default();
        wired.apply(true, before);
        for delta in &deltas {
            let mut print = delta.clone();
            print.insert("command".into(), Value::from("push_status"));
            print.insert("msg".into(), Value::from(1));
            let payload = serde_json::to_vec(&serde_json::json!({ "print": print })).unwrap();
            match parse(&payload) {
                Ok(Message::Status { full, print }) => {
                    prop_assert!(!full, "{}: a delta is not taken for a full report", name);
                    wired.apply(full, &print);
                }
                other => prop_assert!(false, "{}: {:?}", name, other),
            }
        }
        // The same fields, but for the envelope each delta carried.
        let bare = |m: &Map<String, Value>| {
            let mut m = m.clone();
            m.remove("command");
            m.remove("msg");
            m
        };
        prop_assert_eq!(bare(wired.fields()), bare(&next), "{}", name);
        prop_assert_eq!(
            normalize(wired.fields(), None, None),
            normalize(&next, None, None),
            "{}", name
        );
    }

    #[test]
    fn unknown_fields_never_break_parsing_nor_change_the_status(
        report in 0usize..16,
        seed in 1u64..u64::MAX,
        extras in prop::collection::vec(json(), 1..6),
    ) {
        let reports = reports();
        let (name, print) = &reports[report % reports.len()];
        let mut dice = Dice(seed);
        let mut with_extras = print.clone();
        for (n, extra) in extras.into_iter().enumerate() {
            insert_somewhere(&mut with_extras, extra, &mut dice, n);
        }
        let payload = serde_json::to_vec(&serde_json::json!({ "print": with_extras })).unwrap();
        match parse(&payload) {
            Ok(Message::Status { full: true, print: parsed }) => {
                prop_assert_eq!(
                    normalize(&parsed, None, None),
                    normalize(print, None, None),
                    "{}", name
                );
            }
            other => prop_assert!(false, "{}: {:?}", name, other),
        }
    }

    #[test]
    fn any_json_in_a_known_field_never_panics_the_normaliser(
        report in 0usize..16,
        field in 0usize..400,
        value in json(),
    ) {
        let reports = reports();
        let (_, print) = &reports[report % reports.len()];
        let mut print = print.clone();
        let keys: Vec<String> = print.keys().cloned().collect();
        let key = keys[field % keys.len()].clone();
        print.insert(key, value);
        let status = normalize(&print, None, None);
        prop_assert!(status.progress <= 100);
    }
}

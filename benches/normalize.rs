//! Normalizing one full task-list page, as KooDrive sends it (the per-miss cost of normalization).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use koodrive_gateway::normalize::{normalize_body, Outcome, Rule};
use std::hint::black_box;

/// A 100-task page: `taskListDtos`, 19-digit ids as JSON numbers, numeric code and cursor.
fn page() -> Vec<u8> {
    let tasks: Vec<String> = (0..100u64)
        .map(|i| {
            format!(
                r#"{{"taskId":{id},"taskName":"transfer-{i}","taskType":0,"tenantId":{tenant},"userId":"{user}","status":{status},"initParams":"{{\"srcUserId\":\"{user}\",\"dstUserId\":\"u-{i}\"}}","locale":"en-US","resultCode":{result},"createTime":"2024-08-12T07:22:33.000Z","startTime":"2024-08-12T07:22:34.000Z","endTime":"2024-08-12T07:25:01.000Z"}}"#,
                id = 1_486_254_586_942_472_064u64 + i * 7919,
                tenant = 1_100_000_000_000_000_000u64 + i,
                user = 2_230_000_000_000_000_000u64 + i,
                status = i % 4,
                result = 18_000_000 + i,
            )
        })
        .collect();
    format!(
        r#"{{"taskListDtos":[{}],"nextCursor":1723549107000,"code":0,"msg":"Success."}}"#,
        tasks.join(",")
    )
    .into_bytes()
}

/// The ~2 KB page `bench/compare.sh` forwards (bench/common.sh's `write_page`): 15 short tasks,
/// ids as strings, five fields each. Short fields make the per-field cost show, not the per-byte.
fn small_page() -> Vec<u8> {
    let tasks: Vec<String> = (0..15u64)
        .map(|i| {
            format!(
                r#"{{"taskId":"14862545869424{i:05}","taskName":"bench-task-{i:03}","taskType":0,"status":2,"createTime":"2024-08-12T07:22:{s:02}.000Z"}}"#,
                s = i % 60,
            )
        })
        .collect();
    format!(
        r#"{{"taskListDtos":[{}],"nextCursor":1723549107000,"code":0,"msg":"Success."}}"#,
        tasks.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let rule = Rule::task_list();
    let mut group = c.benchmark_group("normalize");
    for (name, body) in [
        ("task_list_page_100", page()),
        ("task_list_page_15_small", small_page()),
    ] {
        assert!(matches!(
            normalize_body(&rule, &body),
            Outcome::Normalized { mismatches: 0, .. }
        ));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| normalize_body(black_box(&rule), black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

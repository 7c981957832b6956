//! Cost of the EA wire codec per message: the bridge decodes every tick and encodes every order.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use mtml_bridge::wire::frame::{put_frame, take_body};
use mtml_bridge::wire::{Envelope, Message, Px, WireTick};

fn tick() -> Envelope {
    Envelope {
        seq: 123_456,
        message: Message::Tick(WireTick {
            symbol: "EURUSDm".into(),
            time_msc: 1_399_230_051_815,
            bid: Px::new(1.387, 5),
            ask: Px::new(1.3879, 5),
        }),
    }
}

fn wire(c: &mut Criterion) {
    let envelope = tick();
    let body = envelope.encode();
    c.bench_function("decode TICK body", |b| b.iter(|| Envelope::decode(black_box(&body)).unwrap()));
    c.bench_function("encode TICK body", |b| b.iter(|| black_box(&envelope).encode()));
    let mut framed = BytesMut::new();
    put_frame(&mut framed, &body).unwrap();
    c.bench_function("unframe and decode TICK", |b| {
        b.iter(|| {
            let mut buffer = framed.clone();
            let body = take_body(&mut buffer).unwrap().unwrap();
            Envelope::decode(&body).unwrap()
        })
    });
}

criterion_group!(benches, wire);
criterion_main!(benches);

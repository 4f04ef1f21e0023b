//! IPC costs: packing and unpacking typed messages (against serde_json on the same structs
//! as a baseline measured in the same run), a request round trip over the socket, and
//! notification throughput to a subscriber. Run: `cargo bench -p dco-control-ipc --bench ipc`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use control_ipc::codec;
use control_ipc::message::{Notification, Request, decode_request, encode_request};
use control_ipc::mock::{MockDaemon, MockPeer};
use control_ipc::schema::*;
use control_ipc::server::{Server, ServerConfig};
use control_ipc::types::{Bytes, InOut, KeyBytes};
use control_ipc::{Client, Limits, from_nvlist, to_nvlist};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn peer_info(i: u32) -> PeerInfo {
    PeerInfo {
        peerid: i,
        remote: format!("198.51.100.{}:{}", i % 250, 1024 + i % 60000)
            .parse()
            .unwrap(),
        local: Some("192.0.2.1:1194".parse().unwrap()),
        vpn_ipv4: Some(Ipv4Addr::from(0x0a08_0000 + i)),
        vpn_ipv6: None,
        common_name: Some(format!("client{i}")),
        iroutes: vec!["192.168.0.0/24".parse().unwrap()],
        keys: vec![KeySlotInfo {
            slot: KeySlot::Primary,
            keyid: 1,
            cipher: Cipher::Aes256Gcm,
            installed: Some(1_700_000_000),
        }],
        interval: 10,
        timeout: 60,
        last_rx: Some(1_700_000_100),
        last_tx: Some(1_700_000_101),
        packets: InOut::new(1000, 2000),
        bytes: InOut::new(1_000_000, 2_000_000),
    }
}

fn new_key() -> NewKey {
    let d = |s| KeyConfig {
        cipher: Cipher::Aes256Gcm,
        key: KeyBytes::new(vec![s; 32]),
        iv: KeyBytes::new(vec![s; 8]),
    };
    NewKey {
        slot: KeySlot::Primary,
        keyid: 1,
        peerid: 5,
        encrypt: d(1),
        decrypt: d(2),
    }
}

fn codec_benches(c: &mut Criterion) {
    let page = PeersPage {
        peers: (0..256).map(peer_info).collect(),
        next: Some(256),
    };
    let packed = codec::encode(&to_nvlist(&page).unwrap()).unwrap();
    let json = serde_json::to_vec(&page).unwrap();
    let mut g = c.benchmark_group("peers_page_256");
    g.throughput(Throughput::Elements(256));
    g.bench_function("nvlist_pack", |b| {
        b.iter(|| codec::encode(&to_nvlist(black_box(&page)).unwrap()).unwrap())
    });
    g.bench_function("nvlist_unpack", |b| {
        b.iter(|| {
            let n = codec::decode(black_box(&packed)).unwrap();
            from_nvlist::<PeersPage>(&n).unwrap()
        })
    });
    g.bench_function("json_pack_baseline", |b| {
        b.iter(|| serde_json::to_vec(black_box(&page)).unwrap())
    });
    g.bench_function("json_unpack_baseline", |b| {
        b.iter(|| serde_json::from_slice::<PeersPage>(black_box(&json)).unwrap())
    });
    g.finish();
    eprintln!(
        "peers_page_256: nvlist {} bytes, json {} bytes",
        packed.len(),
        json.len()
    );

    let req = Request::NewKey(new_key());
    let bytes = encode_request(1, &req).unwrap();
    let mut g = c.benchmark_group("new_key_request");
    g.bench_function("encode", |b| {
        b.iter(|| encode_request(1, black_box(&req)).unwrap())
    });
    g.bench_function("decode_validate", |b| {
        b.iter(|| decode_request(black_box(&bytes), &Limits::default()).unwrap())
    });
    g.finish();
}

fn socket_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ipc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dco0.sock");
    let mock = Arc::new(MockDaemon::new("dco0"));
    for i in 0..256 {
        mock.state().peers.insert(
            i,
            MockPeer {
                config: NewPeer {
                    local: None,
                    remote: format!("198.51.100.1:{}", 1024 + i).parse().unwrap(),
                    vpn_ipv4: None,
                    vpn_ipv6: None,
                    peerid: i,
                    common_name: None,
                    iroutes: vec![],
                },
                keys: [None, None],
                interval: 0,
                timeout: 0,
                packets: InOut::default(),
                bytes: InOut::default(),
            },
        );
    }
    let (client, notifier, stop) = rt.block_on(async {
        let server = Server::bind(ServerConfig::new(&path)).unwrap();
        let notifier = server.notifier();
        let stop = server.shutdown_handle();
        tokio::spawn(server.serve(Arc::clone(&mock)));
        (Client::connect(&path).await.unwrap(), notifier, stop)
    });
    let mut g = c.benchmark_group("socket");
    g.bench_function("get_info_round_trip", |b| {
        b.iter(|| rt.block_on(client.get_info()).unwrap())
    });
    g.bench_function("swap_keys_error_round_trip", |b| {
        b.iter(|| rt.block_on(client.swap_keys(1)).unwrap_err())
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("get_peer_stats_page_256", |b| {
        b.iter(|| rt.block_on(client.get_peer_stats(Page::default())).unwrap())
    });
    // Control packets relayed daemon -> control, as dco-control receives handshakes.
    const BATCH: u64 = 1000;
    g.throughput(Throughput::Elements(BATCH));
    let mut sub = rt
        .block_on(client.subscribe(&[NotificationKind::ControlPacket], Some(65536)))
        .unwrap();
    g.bench_function("control_packet_notifications_x1000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                notifier.notify(Notification::ControlPacket(ControlPacketNote {
                    peerid: None,
                    remote: "198.51.100.7:50000".parse().unwrap(),
                    local: None,
                    packet: Bytes(vec![0x38; 100]),
                }));
            }
            rt.block_on(async {
                for _ in 0..BATCH {
                    match sub.next().await {
                        Some(Notification::ControlPacket(_)) => {}
                        other => panic!("lost or unexpected: {other:?}"),
                    }
                }
            })
        })
    });
    g.finish();
    stop.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, codec_benches, socket_benches);
criterion_main!(benches);

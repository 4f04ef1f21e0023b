//! Published test vectors (the GCM specification's test cases as used by NIST, RFC 8439
//! §2.8.2) through the host model of the kernels at every lane width, and through ring.

use crypto::{AeadKey, AeadOp, BatchAead, CipherKind, CpuBatch};
use gpu::HostModel;

struct Vector {
    name: &'static str,
    cipher: CipherKind,
    key: &'static str,
    nonce: &'static str,
    aad: &'static str,
    pt: Vec<u8>,
    ct: &'static str,
    tag: &'static str,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const GCM_PT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "GCM test case 1 (AES-128, empty)",
            cipher: CipherKind::Aes128Gcm,
            key: "00000000000000000000000000000000",
            nonce: "000000000000000000000000",
            aad: "",
            pt: vec![],
            ct: "",
            tag: "58e2fccefa7e3061367f1d57a4e7455a",
        },
        Vector {
            name: "GCM test case 2 (AES-128, one zero block)",
            cipher: CipherKind::Aes128Gcm,
            key: "00000000000000000000000000000000",
            nonce: "000000000000000000000000",
            aad: "",
            pt: vec![0; 16],
            ct: "0388dace60b6a392f328c2b971b2fe78",
            tag: "ab6e47d42cec13bdf53a67b21257bddf",
        },
        Vector {
            name: "GCM test case 3 (AES-128, 4 blocks)",
            cipher: CipherKind::Aes128Gcm,
            key: "feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888",
            aad: "",
            pt: h(GCM_PT),
            ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
        },
        Vector {
            name: "GCM test case 4 (AES-128, partial block, AAD)",
            cipher: CipherKind::Aes128Gcm,
            key: "feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            pt: h(&GCM_PT[..120]),
            ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            tag: "5bc94fbc3221a5db94fae95ae7121a47",
        },
        Vector {
            name: "GCM test case 16 (AES-256, partial block, AAD)",
            cipher: CipherKind::Aes256Gcm,
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            pt: h(&GCM_PT[..120]),
            ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
        Vector {
            name: "RFC 8439 2.8.2 (ChaCha20-Poly1305)",
            cipher: CipherKind::Chacha20Poly1305,
            key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            nonce: "070000004041424344454647",
            aad: "50515253c0c1c2c3c4c5c6c7",
            pt: b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec(),
            ct: "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
            tag: "1ae10b594f09e26a7e902ecbd0600691",
        },
    ]
}

fn run(backend: &dyn BatchAead, v: &Vector) {
    let key = AeadKey::new(v.cipher, &h(v.key)).unwrap();
    let nonce: [u8; 12] = h(v.nonce).try_into().unwrap();
    let aad = h(v.aad);
    let mut data = v.pt.clone();
    let mut tag = [0u8; 16];
    {
        let mut ops = [AeadOp {
            key: &key,
            nonce,
            aad: &aad,
            data: &mut data,
            tag: &mut tag,
            ok: false,
        }];
        backend.seal(&mut ops);
        assert!(ops[0].ok, "{}: {} seal failed", v.name, backend.name());
    }
    assert_eq!(
        hex::encode(&data),
        v.ct,
        "{}: {} ciphertext",
        v.name,
        backend.name()
    );
    assert_eq!(
        hex::encode(tag),
        v.tag,
        "{}: {} tag",
        v.name,
        backend.name()
    );
    {
        let mut ops = [AeadOp {
            key: &key,
            nonce,
            aad: &aad,
            data: &mut data,
            tag: &mut tag,
            ok: false,
        }];
        backend.open(&mut ops);
        assert!(ops[0].ok, "{}: {} open failed", v.name, backend.name());
    }
    assert_eq!(data, v.pt, "{}: {} plaintext", v.name, backend.name());
    // A flipped tag bit is rejected and leaves the buffer alone.
    let mut ct = h(v.ct);
    let mut bad = tag;
    bad[15] ^= 1;
    let mut ops = [AeadOp {
        key: &key,
        nonce,
        aad: &aad,
        data: &mut ct,
        tag: &mut bad,
        ok: true,
    }];
    backend.open(&mut ops);
    assert!(
        !ops[0].ok,
        "{}: {} accepted a bad tag",
        v.name,
        backend.name()
    );
}

#[test]
fn published_vectors_through_model_and_ring() {
    let backends: Vec<Box<dyn BatchAead>> = vec![
        Box::new(CpuBatch),
        Box::new(HostModel::with_lanes(8)),
        Box::new(HostModel::with_lanes(16)),
        Box::new(HostModel::with_lanes(32)),
    ];
    for v in &vectors() {
        for b in &backends {
            run(b.as_ref(), v);
        }
    }
}

//! Key material is never printed by `Debug` and is wiped when dropped.
//!
//! The drop checks look at the memory a value occupied right after `drop_in_place`, while the
//! storage is still ours (a `MaybeUninit`). Before the drop the same scan must find the key
//! bytes, which shows the scan can see them at all.

use std::mem::{MaybeUninit, size_of};

use crypto::{AeadKey, CipherKind, DecryptKey, EncryptKey, Key2, KeyId, Role};

const KEY_BYTE: u8 = 0xc3; // 195
const IV_BYTE: u8 = 0xb7; // 183

/// keys[i].cipher filled with KEY_BYTE, keys[i].hmac with IV_BYTE.
fn marked_key2() -> Key2 {
    let mut b = [0u8; 256];
    for (i, x) in b.iter_mut().enumerate() {
        *x = if (i / 64) % 2 == 0 { KEY_BYTE } else { IV_BYTE };
    }
    Key2::from_bytes(b)
}

fn assert_redacted(what: &str, s: &str) {
    for needle in [
        "195, 195", "183, 183", "c3c3", "C3C3", "b7b7", "B7B7", "0xc3", "0xC3", "0xb7", "0xB7",
        "c3, c3", "b7, b7",
    ] {
        assert!(!s.contains(needle), "{what} Debug shows key bytes: {s}");
    }
}

#[test]
fn debug_never_shows_key_bytes() {
    let k = marked_key2();
    for c in CipherKind::ALL {
        let (enc, dec) = k.data_keys(Role::Client, c).unwrap();
        let aead = AeadKey::new(c, enc.key()).unwrap();
        let tx = EncryptKey::new(KeyId::new(1).unwrap(), &enc).unwrap();
        let rx = DecryptKey::new(KeyId::new(1).unwrap(), &dec, 64).unwrap();
        for (what, s) in [
            ("Key2", format!("{k:?} {k:#?}")),
            ("DirectionalKey", format!("{enc:?} {dec:#?}")),
            ("AeadKey", format!("{aead:?} {aead:#?}")),
            ("EncryptKey", format!("{tx:?} {tx:#?}")),
            ("DecryptKey", format!("{rx:?} {rx:#?}")),
        ] {
            assert_redacted(what, &s);
        }
        // The non-secret parts are still useful in logs.
        assert!(format!("{tx:?}").contains("key_id"));
        assert!(format!("{aead:?}").contains(&format!("{c:?}")));
    }
}

/// The bytes of the storage `value` occupied, before and after dropping it in place.
fn bytes_before_and_after_drop<T>(value: T) -> (Vec<u8>, Vec<u8>) {
    let mut slot = MaybeUninit::<T>::zeroed();
    slot.write(value);
    let read = |slot: &MaybeUninit<T>| -> Vec<u8> {
        let p = slot.as_ptr().cast::<u8>();
        (0..size_of::<T>())
            // SAFETY: `p` points at `size_of::<T>()` bytes of the live `slot`, zero-filled
            // before the value was written; volatile so the reads after the drop are not
            // optimised away as reads of a dead value.
            .map(|i| unsafe { std::ptr::read_volatile(p.add(i)) })
            .collect()
    };
    let before = read(&slot);
    // SAFETY: the slot holds an initialised `T` that is dropped exactly once, here; it is
    // never used as a `T` again (only its bytes are read).
    unsafe { std::ptr::drop_in_place(slot.as_mut_ptr()) };
    let after = read(&slot);
    (before, after)
}

fn contains_run(hay: &[u8], byte: u8, run: usize) -> bool {
    hay.windows(run).any(|w| w.iter().all(|&b| b == byte))
}

#[test]
fn key2_is_zeroised_on_drop() {
    let (before, after) = bytes_before_and_after_drop(marked_key2());
    assert!(contains_run(&before, KEY_BYTE, 16));
    assert!(after.iter().all(|&b| b == 0), "Key2 left bytes behind");
}

#[test]
fn directional_key_is_zeroised_on_drop() {
    for c in CipherKind::ALL {
        let (enc, _) = marked_key2().data_keys(Role::Server, c).unwrap();
        let (before, after) = bytes_before_and_after_drop(enc);
        assert!(contains_run(&before, KEY_BYTE, c.key_len()));
        assert!(contains_run(&before, IV_BYTE, 8));
        assert!(!contains_run(&after, KEY_BYTE, 4), "{c}: key left behind");
        assert!(
            !contains_run(&after, IV_BYTE, 4),
            "{c}: implicit IV left behind"
        );
    }
}

#[test]
fn aead_key_is_wiped_on_drop() {
    for c in CipherKind::ALL {
        let key = vec![KEY_BYTE; c.key_len()];
        let (before, after) = bytes_before_and_after_drop(AeadKey::new(c, &key).unwrap());
        assert!(contains_run(&before, KEY_BYTE, c.key_len()));
        assert!(
            !contains_run(&after, KEY_BYTE, 4),
            "{c}: key bytes left behind"
        );
    }
}

/// EncryptKey and DecryptKey are checked at their exact secret fields: a scan of the whole
/// image can also see stale copies that the move into the slot left in padding bytes, which
/// no `Drop` can reach.
#[test]
fn encrypt_and_decrypt_keys_are_wiped_on_drop() {
    for c in CipherKind::ALL {
        let (enc, dec) = marked_key2().data_keys(Role::Client, c).unwrap();
        let kid = KeyId::new(0).unwrap();
        let tx = bytes_before_and_after_drop(EncryptKey::new(kid, &enc).unwrap());
        let rx = bytes_before_and_after_drop(DecryptKey::new(kid, &dec, 2048).unwrap());
        for (what, (before, after), ranges) in [
            ("EncryptKey", tx, EncryptKey::secret_ranges()),
            ("DecryptKey", rx, DecryptKey::secret_ranges()),
        ] {
            // Before the drop the scan sees the key and the IV, so it can see them at all.
            assert!(contains_run(&before, KEY_BYTE, c.key_len()), "{c} {what}");
            assert!(contains_run(&before, IV_BYTE, 8), "{c} {what}");
            let [iv, raw, ring] = ranges;
            assert!(
                before[iv.clone()].iter().all(|&b| b == IV_BYTE),
                "{c} {what}: IV not at {iv:?}"
            );
            assert!(
                before[raw.clone()].starts_with(&vec![KEY_BYTE; c.key_len()]),
                "{c} {what}: key not at {raw:?}"
            );
            for r in [iv, raw, ring] {
                assert!(
                    before[r.clone()].iter().any(|&b| b != 0),
                    "{c} {what} {r:?} empty"
                );
                assert!(
                    after[r.clone()].iter().all(|&b| b == 0),
                    "{c} {what} {r:?} left"
                );
            }
        }
    }
}

/// `Zeroize` on a live Key2 / DirectionalKey clears it (for callers that wipe early).
#[test]
fn explicit_zeroize() {
    use zeroize::Zeroize;
    let mut k = marked_key2();
    k.zeroize();
    assert!(k.as_bytes().iter().all(|&b| b == 0));
}

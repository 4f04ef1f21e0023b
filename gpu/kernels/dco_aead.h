/*
 * dco_aead.h: the per-thread code of the dco batch AEAD kernels.
 *
 * One source, two compilers: NVRTC builds it into the CUDA kernels (dco_kernels.cu), and the
 * host C compiler builds it into the CPU model (host_model.c) that the tests compare with ring
 * and RustCrypto. Everything a lane does lives here; the kernels only add thread indexing,
 * __syncwarp() between phases and the shuffle reduction of the per-lane GHASH/Poly1305 sums.
 *
 * Work split: one group of `lanes` threads (8, 16 or 32, aligned inside a warp) per packet.
 *  - CTR keystream: lane l handles 16-byte (AES) or 64-byte (ChaCha20) blocks l, l+lanes, ...
 *  - GHASH / Poly1305 over the m blocks X_0..X_{m-1} of (AAD | payload | lengths): lane l
 *    takes the blocks i = m-1-l-lanes*j, runs Horner with K^lanes over them and multiplies the
 *    result by K^(l+1), so that the XOR (GHASH) or sum (Poly1305) of the lane results is the
 *    full polynomial. K = H (powers precomputed per key) or r (powers computed per packet).
 *
 * Memory layout: every pointer is 4-byte aligned and every region is padded so that whole
 * 16-byte (AES) or 64-byte (ChaCha20) blocks may be read and written; bytes past a length are
 * masked before they enter an authenticator.
 *
 * Side channels: AES uses a 1 KiB T-table and a 256-byte S-box in shared memory, and GHASH
 * uses 4-bit multiplication tables; both index memory with secret-dependent values. On a GPU
 * that only this process uses, an attacker needs code on the same GPU to observe timing;
 * see gpu/README.md ("Constant time").
 */
#ifndef DCO_AEAD_H
#define DCO_AEAD_H

#if defined(__CUDACC__)
#define DCO_HD __device__ __forceinline__
typedef unsigned char dco_u8;
typedef unsigned int dco_u32;
typedef unsigned long long dco_u64;
#else
#include <stdint.h>
#define DCO_HD static inline
typedef uint8_t dco_u8;
typedef uint32_t dco_u32;
typedef uint64_t dco_u64;
#endif

/* Cipher codes; the Rust side (src/abi.rs) mirrors them. */
#define DCO_CIPHER_NONE 0u
#define DCO_CIPHER_AES128_GCM 1u
#define DCO_CIPHER_AES256_GCM 2u
#define DCO_CIPHER_CHACHA20_POLY1305 3u

/* Per-packet status written by the kernels. */
#define DCO_ST_OK 1u
#define DCO_ST_BAD_TAG 2u
#define DCO_ST_BAD_KEY 3u

#define DCO_HPOW 32 /* H^1..H^32 tables per GCM key: enough for 32 lanes per packet */

/* An installed key, expanded once and cached on the device (8448 bytes). */
typedef struct {
    dco_u32 cipher;  /* DCO_CIPHER_*; NONE marks an empty or wiped slot */
    dco_u32 rounds;  /* AES rounds (10 or 14); 0 for ChaCha20 */
    dco_u32 pad[2];
    dco_u32 rk[60];  /* AES round keys as little-endian column words; ChaCha20 key in rk[0..8] */
    dco_u64 htab[DCO_HPOW][16][2]; /* htab[p][v] = v * H^(p+1), GHASH bit order, (hi, lo) */
} dco_key;

/* One operation of a batch (48 bytes). Offsets are bytes from the start of the chunk. */
typedef struct {
    dco_u32 key_slot;
    dco_u32 len;      /* payload bytes */
    dco_u32 aad_len;
    dco_u32 data_off; /* 64-byte aligned, region padded to 64 */
    dco_u32 aad_off;  /* 16-byte aligned, region padded to 16 */
    dco_u32 tag_off;  /* 16 bytes */
    dco_u32 nonce[3]; /* the 12 nonce bytes as little-endian words */
    dco_u32 reserved[3];
} dco_desc;

/* Request to expand one key into a slot (48 bytes). */
typedef struct {
    dco_u32 slot;
    dco_u32 cipher;
    dco_u32 pad[2];
    dco_u32 raw[8];   /* raw key bytes as little-endian words (16 or 32 bytes used) */
} dco_key_req;

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                              */

DCO_HD dco_u32 dco_bswap32(dco_u32 x) {
#if defined(__CUDACC__)
    return __byte_perm(x, 0u, 0x0123u);
#else
    return __builtin_bswap32(x);
#endif
}

DCO_HD dco_u32 dco_rotl32(dco_u32 x, dco_u32 n) {
    return (x << n) | (x >> ((32u - n) & 31u));
}

/* Mask of the bytes of little-endian word `w` (0..3 of a 16-byte block) that lie inside the
 * first `valid` bytes of the block (valid may exceed 16). */
DCO_HD dco_u32 dco_word_mask(dco_u32 valid, dco_u32 w) {
    dco_u32 have = valid > 4u * w ? valid - 4u * w : 0u;
    return have >= 4u ? 0xffffffffu : ((1u << (8u * have)) - 1u);
}

/* ------------------------------------------------------------------------------------------ */
/* AES (T-table)                                                                              */

DCO_HD dco_u32 dco_gf8_mul(dco_u32 a, dco_u32 b) {
    dco_u32 r = 0;
    for (int i = 0; i < 8; i++) {
        r ^= (b & 1u) ? a : 0u;
        a = (a << 1) ^ ((a & 0x80u) ? 0x11bu : 0u);
        b >>= 1;
    }
    return r & 0xffu;
}

/* S-box entry and the matching T0 word (bytes 2s, s, s, 3s from low to high). */
DCO_HD void dco_aes_table_entry(dco_u32 x, dco_u8 *sbox, dco_u32 *te0) {
    /* inverse in GF(2^8) as x^254 (0 maps to 0) */
    dco_u32 inv = 1u, base = x, e = 254u;
    while (e) {
        if (e & 1u) inv = dco_gf8_mul(inv, base);
        base = dco_gf8_mul(base, base);
        e >>= 1;
    }
    if (x == 0u) inv = 0u;
    dco_u32 s = inv;
    dco_u32 r = s;
    for (int i = 0; i < 4; i++) {
        r = ((r << 1) | (r >> 7)) & 0xffu;
        s ^= r;
    }
    s ^= 0x63u;
    *sbox = (dco_u8)s;
    dco_u32 s2 = dco_gf8_mul(s, 2u), s3 = s2 ^ s;
    *te0 = s2 | (s << 8) | (s << 16) | (s3 << 24);
}

DCO_HD dco_u32 dco_sub_word(const dco_u8 *sbox, dco_u32 w) {
    return (dco_u32)sbox[w & 0xffu] | ((dco_u32)sbox[(w >> 8) & 0xffu] << 8) |
           ((dco_u32)sbox[(w >> 16) & 0xffu] << 16) | ((dco_u32)sbox[w >> 24] << 24);
}

/* FIPS-197 key expansion; key words little-endian; nk = 4 or 8. Returns the round count. */
DCO_HD dco_u32 dco_aes_expand(const dco_u8 *sbox, const dco_u32 *key, dco_u32 nk, dco_u32 *rk) {
    dco_u32 nr = nk + 6u;
    dco_u32 total = 4u * (nr + 1u);
    dco_u32 rcon = 1u;
    for (dco_u32 i = 0; i < nk; i++) rk[i] = key[i];
    for (dco_u32 i = nk; i < total; i++) {
        dco_u32 t = rk[i - 1u];
        if (i % nk == 0u) {
            t = dco_sub_word(sbox, (t >> 8) | (t << 24)) ^ rcon;
            rcon = dco_gf8_mul(rcon, 2u);
        } else if (nk > 6u && i % nk == 4u) {
            t = dco_sub_word(sbox, t);
        }
        rk[i] = rk[i - nk] ^ t;
    }
    return nr;
}

/* Encrypts one block given as four little-endian column words, in place. */
DCO_HD void dco_aes_encrypt(const dco_u32 *te0, const dco_u8 *sbox, const dco_u32 *rk,
                            dco_u32 nr, dco_u32 *s) {
    dco_u32 s0 = s[0] ^ rk[0], s1 = s[1] ^ rk[1], s2 = s[2] ^ rk[2], s3 = s[3] ^ rk[3];
    for (dco_u32 r = 1; r < nr; r++) {
        const dco_u32 *k = rk + 4u * r;
#define DCO_TCOL(a, b, c, d)                                                                  \
    (te0[(a) & 0xffu] ^ dco_rotl32(te0[((b) >> 8) & 0xffu], 8) ^                              \
     dco_rotl32(te0[((c) >> 16) & 0xffu], 16) ^ dco_rotl32(te0[(d) >> 24], 24))
        dco_u32 t0 = DCO_TCOL(s0, s1, s2, s3) ^ k[0];
        dco_u32 t1 = DCO_TCOL(s1, s2, s3, s0) ^ k[1];
        dco_u32 t2 = DCO_TCOL(s2, s3, s0, s1) ^ k[2];
        dco_u32 t3 = DCO_TCOL(s3, s0, s1, s2) ^ k[3];
#undef DCO_TCOL
        s0 = t0; s1 = t1; s2 = t2; s3 = t3;
    }
    const dco_u32 *k = rk + 4u * nr;
#define DCO_FCOL(a, b, c, d)                                                                  \
    ((dco_u32)sbox[(a) & 0xffu] | ((dco_u32)sbox[((b) >> 8) & 0xffu] << 8) |                   \
     ((dco_u32)sbox[((c) >> 16) & 0xffu] << 16) | ((dco_u32)sbox[(d) >> 24] << 24))
    s[0] = DCO_FCOL(s0, s1, s2, s3) ^ k[0];
    s[1] = DCO_FCOL(s1, s2, s3, s0) ^ k[1];
    s[2] = DCO_FCOL(s2, s3, s0, s1) ^ k[2];
    s[3] = DCO_FCOL(s3, s0, s1, s2) ^ k[3];
#undef DCO_FCOL
}

/* ------------------------------------------------------------------------------------------ */
/* GHASH: elements are (hi, lo) big-endian halves; bit 0 of the block is the MSB of hi.        */

/* Reference multiply (bit by bit): used only to build the per-key tables. */
DCO_HD void dco_gf128_mul_slow(dco_u64 ah, dco_u64 al, dco_u64 bh, dco_u64 bl, dco_u64 *zh,
                               dco_u64 *zl) {
    dco_u64 rh = 0, rl = 0, vh = bh, vl = bl;
    for (int i = 0; i < 128; i++) {
        dco_u64 bit = i < 64 ? (ah >> (63 - i)) & 1u : (al >> (127 - i)) & 1u;
        dco_u64 m = (dco_u64)0 - bit;
        rh ^= vh & m;
        rl ^= vl & m;
        dco_u64 lsb = vl & 1u;
        vl = (vl >> 1) | (vh << 63);
        vh = (vh >> 1) ^ (((dco_u64)0 - lsb) & 0xe100000000000000ull);
    }
    *zh = rh;
    *zl = rl;
}

/* tab[v] = v * K for the 4-bit values v, where v's MSB is the coefficient of x^0. */
DCO_HD void dco_ghash_table(dco_u64 kh, dco_u64 kl, dco_u64 tab[16][2]) {
    dco_u64 h = kh, l = kl;
    tab[0][0] = 0;
    tab[0][1] = 0;
    for (int bit = 8; bit >= 1; bit >>= 1) {
        tab[bit][0] = h;
        tab[bit][1] = l;
        dco_u64 lsb = l & 1u;
        l = (l >> 1) | (h << 63);
        h = (h >> 1) ^ (((dco_u64)0 - lsb) & 0xe100000000000000ull);
    }
    for (int v = 2; v < 16; v <<= 1)
        for (int j = 1; j < v; j++) {
            tab[v + j][0] = tab[v][0] ^ tab[j][0];
            tab[v + j][1] = tab[v][1] ^ tab[j][1];
        }
}

/* z = z * K using K's 4-bit table: Horner over the 32 nibbles, last nibble first. */
DCO_HD void dco_ghash_mul(dco_u64 *zh, dco_u64 *zl, const dco_u64 (*tab)[2]) {
    dco_u64 xh = *zh, xl = *zl, rh = 0, rl = 0;
    for (int half = 0; half < 2; half++) {
        dco_u64 x = half == 0 ? xl : xh;
        for (int i = 0; i < 16; i++) {
            dco_u64 out = rl & 0xfu;
            /* the four bits shifted out fold back as (0xE1 * out) << 53, carry-less */
            dco_u64 red = ((out & 1u) * 0x1c20u) ^ (((out >> 1) & 1u) * 0x3840u) ^
                          (((out >> 2) & 1u) * 0x7080u) ^ (((out >> 3) & 1u) * 0xe100u);
            rl = (rl >> 4) | (rh << 60);
            rh = (rh >> 4) ^ (red << 48);
            dco_u32 v = (dco_u32)(x >> (4 * i)) & 0xfu;
            rh ^= tab[v][0];
            rl ^= tab[v][1];
        }
    }
    *zh = rh;
    *zl = rl;
}

/* Loads a 16-byte block (four little-endian words) as a GHASH element, keeping `valid` bytes. */
DCO_HD void dco_block_to_gf(const dco_u32 *w, dco_u32 valid, dco_u64 *h, dco_u64 *l) {
    dco_u32 a = w[0] & dco_word_mask(valid, 0), b = w[1] & dco_word_mask(valid, 1);
    dco_u32 c = w[2] & dco_word_mask(valid, 2), d = w[3] & dco_word_mask(valid, 3);
    *h = ((dco_u64)dco_bswap32(a) << 32) | dco_bswap32(b);
    *l = ((dco_u64)dco_bswap32(c) << 32) | dco_bswap32(d);
}

/* ------------------------------------------------------------------------------------------ */
/* Key setup (one thread per key)                                                             */

DCO_HD void dco_key_setup(const dco_u8 *sbox, const dco_u32 *te0, dco_u32 cipher,
                          const dco_u32 *raw, dco_key *k) {
    k->cipher = DCO_CIPHER_NONE;
    k->rounds = 0;
    k->pad[0] = 0;
    k->pad[1] = 0;
    for (int i = 0; i < 60; i++) k->rk[i] = 0;
    if (cipher == DCO_CIPHER_CHACHA20_POLY1305) {
        for (int i = 0; i < 8; i++) k->rk[i] = raw[i];
        for (int p = 0; p < DCO_HPOW; p++)
            for (int v = 0; v < 16; v++) {
                k->htab[p][v][0] = 0;
                k->htab[p][v][1] = 0;
            }
        k->cipher = cipher;
        return;
    }
    if (cipher != DCO_CIPHER_AES128_GCM && cipher != DCO_CIPHER_AES256_GCM) return;
    dco_u32 nr = dco_aes_expand(sbox, raw, cipher == DCO_CIPHER_AES128_GCM ? 4u : 8u, k->rk);
    dco_u32 hb[4] = {0, 0, 0, 0};
    dco_aes_encrypt(te0, sbox, k->rk, nr, hb);
    dco_u64 hh, hl, ph, pl;
    dco_block_to_gf(hb, 16u, &hh, &hl);
    ph = hh;
    pl = hl;
    for (int p = 0; p < DCO_HPOW; p++) {
        dco_ghash_table(ph, pl, k->htab[p]);
        dco_gf128_mul_slow(ph, pl, hh, hl, &ph, &pl);
    }
    k->rounds = nr;
    k->cipher = cipher;
}

/* ------------------------------------------------------------------------------------------ */
/* AES-GCM lanes                                                                              */

/* CTR pass: XORs the keystream into the payload blocks of this lane (counter 2 + block). */
DCO_HD void dco_gcm_ctr_lane(const dco_u32 *te0, const dco_u8 *sbox, const dco_key *k,
                             const dco_desc *d, dco_u32 *data, dco_u32 lane, dco_u32 lanes) {
    dco_u32 nblk = (d->len + 15u) / 16u;
    for (dco_u32 b = lane; b < nblk; b += lanes) {
        dco_u32 ks[4] = {d->nonce[0], d->nonce[1], d->nonce[2], dco_bswap32(b + 2u)};
        dco_aes_encrypt(te0, sbox, k->rk, k->rounds, ks);
        dco_u32 *w = data + 4u * b;
        w[0] ^= ks[0];
        w[1] ^= ks[1];
        w[2] ^= ks[2];
        w[3] ^= ks[3];
    }
}

/* This lane's share of GHASH(AAD, ciphertext). XOR the shares of all lanes for the total. */
DCO_HD void dco_gcm_ghash_lane(const dco_key *k, const dco_desc *d, const dco_u32 *aad,
                               const dco_u32 *data, dco_u32 lane, dco_u32 lanes, dco_u64 *out_h,
                               dco_u64 *out_l) {
    dco_u32 ab = (d->aad_len + 15u) / 16u, cb = (d->len + 15u) / 16u;
    dco_u32 m = ab + cb + 1u;
    dco_u64 yh = 0, yl = 0;
    if (lane < m) {
        dco_u32 last = m - 1u - lane;
        dco_u32 first = last % lanes;
        for (dco_u32 i = first;; i += lanes) {
            dco_u64 xh, xl;
            if (i < ab) {
                dco_block_to_gf(aad + 4u * i, d->aad_len - 16u * i, &xh, &xl);
            } else if (i < ab + cb) {
                dco_u32 c = i - ab;
                dco_block_to_gf(data + 4u * c, d->len - 16u * c, &xh, &xl);
            } else {
                xh = (dco_u64)d->aad_len * 8u;
                xl = (dco_u64)d->len * 8u;
            }
            yh ^= xh;
            yl ^= xl;
            if (i == last) break;
            dco_ghash_mul(&yh, &yl, k->htab[lanes - 1u]);
        }
        dco_ghash_mul(&yh, &yl, k->htab[lane]);
    }
    *out_h = yh;
    *out_l = yl;
}

/* The tag from the GHASH total: T = GHASH ^ E(K, J0), as four little-endian words. */
DCO_HD void dco_gcm_tag(const dco_u32 *te0, const dco_u8 *sbox, const dco_key *k,
                        const dco_desc *d, dco_u64 sh, dco_u64 sl, dco_u32 *tag) {
    dco_u32 ej[4] = {d->nonce[0], d->nonce[1], d->nonce[2], dco_bswap32(1u)};
    dco_aes_encrypt(te0, sbox, k->rk, k->rounds, ej);
    tag[0] = ej[0] ^ dco_bswap32((dco_u32)(sh >> 32));
    tag[1] = ej[1] ^ dco_bswap32((dco_u32)sh);
    tag[2] = ej[2] ^ dco_bswap32((dco_u32)(sl >> 32));
    tag[3] = ej[3] ^ dco_bswap32((dco_u32)sl);
}

/* ------------------------------------------------------------------------------------------ */
/* ChaCha20 (RFC 8439)                                                                        */

#define DCO_QR(a, b, c, d)                                                                    \
    a += b; d ^= a; d = dco_rotl32(d, 16);                                                    \
    c += d; b ^= c; b = dco_rotl32(b, 12);                                                    \
    a += b; d ^= a; d = dco_rotl32(d, 8);                                                     \
    c += d; b ^= c; b = dco_rotl32(b, 7);

DCO_HD void dco_chacha_block(const dco_u32 *key, dco_u32 counter, const dco_u32 *nonce,
                             dco_u32 *out) {
    dco_u32 in[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u,
                      key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
                      counter, nonce[0], nonce[1], nonce[2]};
    dco_u32 x[16];
    for (int i = 0; i < 16; i++) x[i] = in[i];
    for (int i = 0; i < 10; i++) {
        DCO_QR(x[0], x[4], x[8], x[12]) DCO_QR(x[1], x[5], x[9], x[13])
        DCO_QR(x[2], x[6], x[10], x[14]) DCO_QR(x[3], x[7], x[11], x[15])
        DCO_QR(x[0], x[5], x[10], x[15]) DCO_QR(x[1], x[6], x[11], x[12])
        DCO_QR(x[2], x[7], x[8], x[13]) DCO_QR(x[3], x[4], x[9], x[14])
    }
    for (int i = 0; i < 16; i++) out[i] = x[i] + in[i];
}
#undef DCO_QR

/* CTR pass: 64-byte blocks of this lane, block counter 1 + block. */
DCO_HD void dco_chacha_ctr_lane(const dco_key *k, const dco_desc *d, dco_u32 *data,
                                dco_u32 lane, dco_u32 lanes) {
    dco_u32 nblk = (d->len + 63u) / 64u;
    for (dco_u32 b = lane; b < nblk; b += lanes) {
        dco_u32 ks[16];
        dco_chacha_block(k->rk, b + 1u, d->nonce, ks);
        dco_u32 *w = data + 16u * b;
        for (int i = 0; i < 16; i++) w[i] ^= ks[i];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Poly1305 with five 26-bit limbs                                                            */

typedef struct {
    dco_u32 v[5];
} dco_p130;

DCO_HD dco_p130 dco_p130_from_words(dco_u32 w0, dco_u32 w1, dco_u32 w2, dco_u32 w3,
                                    dco_u32 hibit) {
    dco_p130 r;
    r.v[0] = w0 & 0x3ffffffu;
    r.v[1] = ((w0 >> 26) | (w1 << 6)) & 0x3ffffffu;
    r.v[2] = ((w1 >> 20) | (w2 << 12)) & 0x3ffffffu;
    r.v[3] = ((w2 >> 14) | (w3 << 18)) & 0x3ffffffu;
    r.v[4] = (w3 >> 8) | (hibit << 24);
    return r;
}

/* a * b mod 2^130-5, partially reduced (limbs below 2^26 but for a small excess in v[1]).
 * Inputs may have limbs up to about 2^27. */
DCO_HD dco_p130 dco_p130_mul(dco_p130 a, dco_p130 b) {
    dco_u64 b0 = b.v[0], b1 = b.v[1], b2 = b.v[2], b3 = b.v[3], b4 = b.v[4];
    dco_u64 s1 = b1 * 5u, s2 = b2 * 5u, s3 = b3 * 5u, s4 = b4 * 5u;
    dco_u64 a0 = a.v[0], a1 = a.v[1], a2 = a.v[2], a3 = a.v[3], a4 = a.v[4];
    dco_u64 d0 = a0 * b0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
    dco_u64 d1 = a0 * b1 + a1 * b0 + a2 * s4 + a3 * s3 + a4 * s2;
    dco_u64 d2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * s4 + a4 * s3;
    dco_u64 d3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * s4;
    dco_u64 d4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0;
    dco_p130 r;
    dco_u64 c;
    c = d0 >> 26; r.v[0] = (dco_u32)d0 & 0x3ffffffu; d1 += c;
    c = d1 >> 26; r.v[1] = (dco_u32)d1 & 0x3ffffffu; d2 += c;
    c = d2 >> 26; r.v[2] = (dco_u32)d2 & 0x3ffffffu; d3 += c;
    c = d3 >> 26; r.v[3] = (dco_u32)d3 & 0x3ffffffu; d4 += c;
    c = d4 >> 26; r.v[4] = (dco_u32)d4 & 0x3ffffffu;
    dco_u64 t = (dco_u64)r.v[0] + c * 5u;
    r.v[0] = (dco_u32)t & 0x3ffffffu;
    r.v[1] += (dco_u32)(t >> 26);
    return r;
}

DCO_HD void dco_p130_add(dco_p130 *a, dco_p130 b) {
    for (int i = 0; i < 5; i++) a->v[i] += b.v[i];
}

/* Poly1305 key (r clamped, s) from ChaCha20 block 0. */
DCO_HD void dco_poly_key(const dco_key *k, const dco_desc *d, dco_p130 *r, dco_u32 *s) {
    dco_u32 b0[16];
    dco_chacha_block(k->rk, 0u, d->nonce, b0);
    *r = dco_p130_from_words(b0[0] & 0x0fffffffu, b0[1] & 0x0ffffffcu, b0[2] & 0x0ffffffcu,
                             b0[3] & 0x0ffffffcu, 0u);
    for (int i = 0; i < 4; i++) s[i] = b0[4 + i];
}

/* This lane's share of the Poly1305 sum (before the final reduction and + s). Each lane
 * derives r^(lane+1) and r^lanes itself by squaring (lanes is 8, 16 or 32). */
DCO_HD dco_p130 dco_poly_lane(dco_p130 r, const dco_desc *d, const dco_u32 *aad,
                              const dco_u32 *data, dco_u32 lane, dco_u32 lanes) {
    dco_p130 h;
    for (int i = 0; i < 5; i++) h.v[i] = 0;
    dco_u32 ab = (d->aad_len + 15u) / 16u, cb = (d->len + 15u) / 16u;
    dco_u32 m = ab + cb + 1u;
    if (lane >= m) return h;
    /* r^(2^j) for j = 0..5, and r^(lane+1), r^lanes from them */
    dco_p130 sq = r, rl = r, rn = r;
    dco_u32 e = lane + 1u;
    int have = 0;
    for (dco_u32 j = 0; j < 6; j++) {
        if ((1u << j) == lanes) rn = sq;
        if (e & (1u << j)) {
            rl = have ? dco_p130_mul(rl, sq) : sq;
            have = 1;
        }
        if (j < 5) sq = dco_p130_mul(sq, sq);
    }
    dco_u32 last = m - 1u - lane;
    for (dco_u32 i = last % lanes;; i += lanes) {
        dco_p130 x;
        if (i < ab) {
            const dco_u32 *w = aad + 4u * i;
            dco_u32 v = d->aad_len - 16u * i;
            x = dco_p130_from_words(w[0] & dco_word_mask(v, 0), w[1] & dco_word_mask(v, 1),
                                    w[2] & dco_word_mask(v, 2), w[3] & dco_word_mask(v, 3),
                                    1u);
        } else if (i < ab + cb) {
            dco_u32 c = i - ab;
            const dco_u32 *w = data + 4u * c;
            dco_u32 v = d->len - 16u * c;
            x = dco_p130_from_words(w[0] & dco_word_mask(v, 0), w[1] & dco_word_mask(v, 1),
                                    w[2] & dco_word_mask(v, 2), w[3] & dco_word_mask(v, 3),
                                    1u);
        } else {
            x = dco_p130_from_words(d->aad_len, 0u, d->len, 0u, 1u);
        }
        dco_p130_add(&h, x);
        if (i == last) break;
        h = dco_p130_mul(h, rn);
    }
    return dco_p130_mul(h, rl);
}

/* Final reduction of the summed lane shares and tag = (h + s) mod 2^128. */
DCO_HD void dco_poly_finish(dco_p130 h, const dco_u32 *s, dco_u32 *tag) {
    dco_u32 h0 = h.v[0], h1 = h.v[1], h2 = h.v[2], h3 = h.v[3], h4 = h.v[4], c;
    for (int pass = 0; pass < 2; pass++) {
        c = h0 >> 26; h0 &= 0x3ffffffu; h1 += c;
        c = h1 >> 26; h1 &= 0x3ffffffu; h2 += c;
        c = h2 >> 26; h2 &= 0x3ffffffu; h3 += c;
        c = h3 >> 26; h3 &= 0x3ffffffu; h4 += c;
        c = h4 >> 26; h4 &= 0x3ffffffu; h0 += c * 5u;
    }
    c = h0 >> 26; h0 &= 0x3ffffffu; h1 += c;
    c = h1 >> 26; h1 &= 0x3ffffffu; h2 += c;
    c = h2 >> 26; h2 &= 0x3ffffffu; h3 += c;
    c = h3 >> 26; h3 &= 0x3ffffffu; h4 += c;
    /* h0..h3 canonical, h < 2^130 + small < 2p: subtract p once if h >= p */
    dco_u32 g0 = h0 + 5u;
    c = g0 >> 26; g0 &= 0x3ffffffu;
    dco_u32 g1 = h1 + c; c = g1 >> 26; g1 &= 0x3ffffffu;
    dco_u32 g2 = h2 + c; c = g2 >> 26; g2 &= 0x3ffffffu;
    dco_u32 g3 = h3 + c; c = g3 >> 26; g3 &= 0x3ffffffu;
    dco_u32 g4 = h4 + c - (1u << 26);
    dco_u32 mask = (g4 >> 31) - 1u; /* all ones when g4 did not borrow: h >= p */
    h0 = (h0 & ~mask) | (g0 & mask);
    h1 = (h1 & ~mask) | (g1 & mask);
    h2 = (h2 & ~mask) | (g2 & mask);
    h3 = (h3 & ~mask) | (g3 & mask);
    h4 = (h4 & ~mask) | (g4 & mask);
    dco_u32 w0 = h0 | (h1 << 26);
    dco_u32 w1 = (h1 >> 6) | (h2 << 20);
    dco_u32 w2 = (h2 >> 12) | (h3 << 14);
    dco_u32 w3 = (h3 >> 18) | (h4 << 8);
    dco_u64 f;
    f = (dco_u64)w0 + s[0]; tag[0] = (dco_u32)f;
    f = (dco_u64)w1 + s[1] + (f >> 32); tag[1] = (dco_u32)f;
    f = (dco_u64)w2 + s[2] + (f >> 32); tag[2] = (dco_u32)f;
    f = (dco_u64)w3 + s[3] + (f >> 32); tag[3] = (dco_u32)f;
}

/* Constant-time tag comparison: 1 when equal. */
DCO_HD dco_u32 dco_tag_eq(const dco_u32 *a, const dco_u32 *b) {
    dco_u32 diff = (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]);
    return 1u & ((diff - 1u) >> 31) & ~(diff >> 31);
}

#endif /* DCO_AEAD_H */

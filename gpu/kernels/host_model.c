/*
 * host_model.c: the CPU model of the dco kernels. It runs the per-lane functions of
 * dco_aead.h exactly as the CUDA kernels in dco_kernels.cu do, lane after lane instead of in
 * parallel, with the XOR/sum of the lane shares in place of the warp shuffles. The tests compare
 * it with ring and RustCrypto; the GPU tests compare the real kernels with it and with ring.
 */
#include "dco_aead.h"

void dco_model_tables(dco_u8 *sbox, dco_u32 *te0) {
    for (dco_u32 x = 0; x < 256u; x++) dco_aes_table_entry(x, &sbox[x], &te0[x]);
}

void dco_model_key_setup(const dco_u8 *sbox, const dco_u32 *te0, const dco_key_req *req,
                         dco_key *out) {
    dco_key_setup(sbox, te0, req->cipher, req->raw, out);
}

static void model_gcm(const dco_u8 *sbox, const dco_u32 *te0, int open, const dco_key *k,
                      const dco_desc *d, const dco_u32 *aad, dco_u32 *data, dco_u32 *tag,
                      dco_u32 *status, dco_u32 lanes) {
    if (!open)
        for (dco_u32 l = 0; l < lanes; l++) dco_gcm_ctr_lane(te0, sbox, k, d, data, l, lanes);
    dco_u64 sh = 0, sl = 0;
    for (dco_u32 l = 0; l < lanes; l++) {
        dco_u64 h, lo;
        dco_gcm_ghash_lane(k, d, aad, data, l, lanes, &h, &lo);
        sh ^= h;
        sl ^= lo;
    }
    dco_u32 t[4];
    dco_gcm_tag(te0, sbox, k, d, sh, sl, t);
    if (open) {
        dco_u32 ok = dco_tag_eq(t, tag);
        for (dco_u32 l = 0; l < lanes; l++) dco_gcm_ctr_lane(te0, sbox, k, d, data, l, lanes);
        *status = ok ? DCO_ST_OK : DCO_ST_BAD_TAG;
    } else {
        for (int i = 0; i < 4; i++) tag[i] = t[i];
        *status = DCO_ST_OK;
    }
}

static void model_chacha(int open, const dco_key *k, const dco_desc *d, const dco_u32 *aad,
                         dco_u32 *data, dco_u32 *tag, dco_u32 *status, dco_u32 lanes) {
    dco_p130 r;
    dco_u32 s[4];
    dco_poly_key(k, d, &r, s);
    if (!open)
        for (dco_u32 l = 0; l < lanes; l++) dco_chacha_ctr_lane(k, d, data, l, lanes);
    dco_p130 h;
    for (int i = 0; i < 5; i++) h.v[i] = 0;
    for (dco_u32 l = 0; l < lanes; l++) dco_p130_add(&h, dco_poly_lane(r, d, aad, data, l, lanes));
    dco_u32 t[4];
    dco_poly_finish(h, s, t);
    if (open) {
        dco_u32 ok = dco_tag_eq(t, tag);
        for (dco_u32 l = 0; l < lanes; l++) dco_chacha_ctr_lane(k, d, data, l, lanes);
        *status = ok ? DCO_ST_OK : DCO_ST_BAD_TAG;
    } else {
        for (int i = 0; i < 4; i++) tag[i] = t[i];
        *status = DCO_ST_OK;
    }
}

/* Same contract as the dco_aead_batch kernel. */
void dco_model_run(const dco_u8 *sbox, const dco_u32 *te0, int open, const dco_key *keys,
                   dco_u32 nkeys, dco_u8 *chunk, dco_u32 n, dco_u32 status_off, dco_u32 lanes) {
    const dco_desc *descs = (const dco_desc *)chunk;
    dco_u32 *status = (dco_u32 *)(chunk + status_off);
    for (dco_u32 p = 0; p < n; p++) {
        const dco_desc *d = &descs[p];
        const dco_key *k = d->key_slot < nkeys ? &keys[d->key_slot] : 0;
        dco_u32 cipher = k ? k->cipher : DCO_CIPHER_NONE;
        const dco_u32 *aad = (const dco_u32 *)(chunk + d->aad_off);
        dco_u32 *data = (dco_u32 *)(chunk + d->data_off);
        dco_u32 *tag = (dco_u32 *)(chunk + d->tag_off);
        if (cipher == DCO_CIPHER_AES128_GCM || cipher == DCO_CIPHER_AES256_GCM)
            model_gcm(sbox, te0, open, k, d, aad, data, tag, &status[p], lanes);
        else if (cipher == DCO_CIPHER_CHACHA20_POLY1305)
            model_chacha(open, k, d, aad, data, tag, &status[p], lanes);
        else
            status[p] = DCO_ST_BAD_KEY;
    }
}

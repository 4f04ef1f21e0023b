/*
 * dco_kernels.cu: the CUDA kernels of the dco batch AEAD, compiled at run time by NVRTC.
 * The Rust side prepends dco_aead.h (the per-lane code shared with the host model), so the
 * include below is only for editors and offline nvcc builds.
 *
 * Launch with 256 threads per block; every block rebuilds the AES tables in shared memory
 * (one entry per thread), which costs less than reading them from global memory.
 */
#ifndef DCO_AEAD_H
#include "dco_aead.h"
#endif

__device__ __forceinline__ void dco_shared_tables(dco_u8 *sbox, dco_u32 *te0) {
    for (dco_u32 x = threadIdx.x; x < 256u; x += blockDim.x)
        dco_aes_table_entry(x, &sbox[x], &te0[x]);
    __syncthreads();
}

/* Expands `n` keys into their slots (one thread each) and wipes the raw key words. */
extern "C" __global__ void __launch_bounds__(256)
dco_key_setup_kernel(dco_key *keys, dco_u32 nkeys, dco_key_req *reqs, dco_u32 n) {
    __shared__ dco_u32 te0[256];
    __shared__ dco_u8 sbox[256];
    dco_shared_tables(sbox, te0);
    dco_u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dco_key_req *r = &reqs[i];
    if (r->slot < nkeys) dco_key_setup(sbox, te0, r->cipher, r->raw, &keys[r->slot]);
    for (int w = 0; w < 8; w++) r->raw[w] = 0u;
}

/*
 * Seals (open == 0) or opens (open == 1) the `n` operations described at the start of `chunk`.
 * `lanes` (8, 16 or 32) threads work on one packet; status words go to chunk + status_off.
 */
extern "C" __global__ void __launch_bounds__(256)
dco_aead_batch(const dco_key *keys, dco_u32 nkeys, dco_u8 *chunk, dco_u32 n,
               dco_u32 status_off, dco_u32 lanes, dco_u32 open) {
    __shared__ dco_u32 te0[256];
    __shared__ dco_u8 sbox[256];
    dco_shared_tables(sbox, te0);

    dco_u32 gtid = blockIdx.x * blockDim.x + threadIdx.x;
    dco_u32 p = gtid / lanes, lane = gtid % lanes;
    if (p >= n) return; /* the whole group leaves together */
    dco_u32 wl = threadIdx.x & 31u;
    dco_u32 gmask = (lanes >= 32u ? 0xffffffffu : ((1u << lanes) - 1u)) << (wl & ~(lanes - 1u));

    const dco_desc *d = (const dco_desc *)chunk + p;
    dco_u32 *status = (dco_u32 *)(chunk + status_off);
    const dco_key *k = d->key_slot < nkeys ? &keys[d->key_slot] : (const dco_key *)0;
    dco_u32 cipher = k ? k->cipher : DCO_CIPHER_NONE;
    const dco_u32 *aad = (const dco_u32 *)(chunk + d->aad_off);
    dco_u32 *data = (dco_u32 *)(chunk + d->data_off);
    dco_u32 *tag = (dco_u32 *)(chunk + d->tag_off);

    if (cipher == DCO_CIPHER_AES128_GCM || cipher == DCO_CIPHER_AES256_GCM) {
        if (!open) {
            dco_gcm_ctr_lane(te0, sbox, k, d, data, lane, lanes);
            __syncwarp(gmask);
        }
        dco_u64 sh, sl;
        dco_gcm_ghash_lane(k, d, aad, data, lane, lanes, &sh, &sl);
        for (dco_u32 off = lanes >> 1; off; off >>= 1) {
            sh ^= __shfl_xor_sync(gmask, sh, off, lanes);
            sl ^= __shfl_xor_sync(gmask, sl, off, lanes);
        }
        dco_u32 ok = 1u;
        if (lane == 0u) {
            dco_u32 t[4];
            dco_gcm_tag(te0, sbox, k, d, sh, sl, t);
            if (open) {
                ok = dco_tag_eq(t, tag);
            } else {
                for (int i = 0; i < 4; i++) tag[i] = t[i];
            }
        }
        if (open) {
            __syncwarp(gmask); /* every lane has read the ciphertext before it is overwritten */
            dco_gcm_ctr_lane(te0, sbox, k, d, data, lane, lanes);
        }
        if (lane == 0u) status[p] = ok ? DCO_ST_OK : DCO_ST_BAD_TAG;
    } else if (cipher == DCO_CIPHER_CHACHA20_POLY1305) {
        dco_p130 r;
        dco_u32 s[4];
        dco_poly_key(k, d, &r, s);
        if (!open) {
            dco_chacha_ctr_lane(k, d, data, lane, lanes);
            __syncwarp(gmask);
        }
        dco_p130 h = dco_poly_lane(r, d, aad, data, lane, lanes);
        for (dco_u32 off = lanes >> 1; off; off >>= 1)
            for (int i = 0; i < 5; i++) h.v[i] += __shfl_xor_sync(gmask, h.v[i], off, lanes);
        dco_u32 ok = 1u;
        if (lane == 0u) {
            dco_u32 t[4];
            dco_poly_finish(h, s, t);
            if (open) {
                ok = dco_tag_eq(t, tag);
            } else {
                for (int i = 0; i < 4; i++) tag[i] = t[i];
            }
        }
        if (open) {
            __syncwarp(gmask);
            dco_chacha_ctr_lane(k, d, data, lane, lanes);
        }
        if (lane == 0u) status[p] = ok ? DCO_ST_OK : DCO_ST_BAD_TAG;
    } else if (lane == 0u) {
        status[p] = DCO_ST_BAD_KEY;
    }
}

"""PyTorch side of the VQGAN / TE-VQGAN training-step benchmark (benches/vqgan_step.py): a
self-contained re-write, used for timing only. No parity fixture comes from it: those are computed
with the upstream code itself (reference/upstream_vqgan_fixtures.py, reference/quant_fixtures.py).

Behaviour follows shared/reference/spec.md §1.2 (encoder/decoder), §1.3 + §2.2/§2.3 (quantizer),
§1.4 (loss, discriminator, LPIPS), §2.4 (TE-VQGAN encoder options) and §2.5 (TE config). It was written
against CompVis/taming-transformers @3ba01b2 and wcshin-git/TE-VQGAN @248f883 (same file paths), but is
an independent re-write: only the *module attribute names* are copied on purpose, so that
`state_dict()` keys are identical to a taming / TE checkpoint:

    encoder.conv_in.weight                      (TE + use_replicationpad: encoder.conv_in.1.weight)
    encoder.down.{i}.block.{j}.{norm1,conv1,norm2,conv2,nin_shortcut}.*
                                                (TE + replication pad: conv1.1.*, conv2.1.*;
                                                 nin_shortcut (1x1) is never padded)
    encoder.down.{i}.attn.{j}.{norm,q,k,v,proj_out}.*
    encoder.down.{i}.downsample.conv.*          strided_conv
    encoder.down.{i}.downsample.module.0.*      convblurpool: the 3x3 stride-1 conv
    encoder.down.{i}.downsample.module.1.filt   convblurpool / maxblurpool: BlurPool buffer (C,1,5,5)
                                                (maxpool: no tensors at all)
    encoder.mid.{block_1,attn_1,block_2}.*      (mid ResnetBlocks are replication-padded too in TE)
    encoder.norm_out.*, encoder.conv_out.*      (TE + replication pad: encoder.conv_out.1.*)
    decoder.conv_in.*, decoder.mid.*, decoder.up.{i}.block.{j}.*, decoder.up.{i}.attn.{j}.*,
    decoder.up.{i}.upsample.conv.*, decoder.norm_out.*, decoder.conv_out.*   (decoder never changes)
    quant_conv.*, post_quant_conv.*, quantize.embedding.weight

Run nothing here; see benches/vqgan_step.py.
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tessera_backbones import TinyFeatures  # noqa: E402,F401  (re-exported for the benchmark)

# ----------------------------------------------------------------------------------------------
# Building blocks (spec §1.2)
# ----------------------------------------------------------------------------------------------


def swish(x):
    """taming's `nonlinearity`: x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def Normalize(channels):
    """GroupNorm(32 groups, eps 1e-6, affine) — spec §1.2."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def conv3x3(cin, cout, replicate=False):
    """A stride-1 3x3 conv. With `replicate` (TE `use_replicationpad`, spec §2.4) it is
    `Sequential(ReplicationPad2d(1), Conv2d(padding=0))`, so its parameters live under `.1.`."""
    if replicate:
        return nn.Sequential(nn.ReplicationPad2d(1), nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=0))
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus a 1x1 `nin_shortcut` when
    in != out (spec §1.2). No time embedding (taming's autoencoder uses temb_channels=0).
    TE's replication padding applies to conv1/conv2 only, never to the 1x1 shortcut (spec §2.4)."""

    def __init__(self, in_channels, out_channels=None, dropout=0.0, use_replicationpad=False):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, use_replicationpad)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels, use_replicationpad)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 q, k, v, proj_out on GN(x) (spec §1.2)."""

    def __init__(self, channels):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x):
        hn = self.norm(x)
        q, k, v = self.q(hn), self.k(hn), self.v(hn)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # (B, HW, C)
        k = k.reshape(b, c, hh * ww)  # (B, C, HW)
        w = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)  # (B, HW_q, HW_k), softmax over keys
        v = v.reshape(b, c, hh * ww)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)  # out[:, :, i] = sum_j w[i, j] v[:, :, j]
        return x + self.proj_out(out)


class Upsample(nn.Module):
    """Nearest x2 then conv3x3 (zero padding; the decoder is never replication-padded)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Strided-conv downsampler (spec §1.2, §2.4): pad (left 0, right 1, top 0, bottom 1), then conv3x3
    stride 2 padding 0. The pad is zeros, except TE `version='v2'` with `use_replicationpad=True`,
    where it is replicate. (taming's with_conv=False avg-pool path is never used and is omitted.)"""

    def __init__(self, channels, use_replicationpad=False, version="v1"):
        super().__init__()
        assert version in ("v1", "v2")
        self.replicate = version == "v2" and use_replicationpad
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x):
        if self.replicate:
            x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        else:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


_BINOMIAL = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0], 5: [1.0, 4.0, 6.0, 4.0, 1.0],
             6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0], 7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]}
_PAD_LAYERS = {"reflect": nn.ReflectionPad2d, "refl": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d,
               "repl": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019) as in TE (spec §2.4): depthwise conv with the normalised
    outer product of the binomial row `a`, stride 2, after padding [(f-1)//2, ceil((f-1)/2)] on
    (left, right, top, bottom). The filter is a *persistent buffer* named `filt`, shape (C,1,f,f),
    so it appears in the state_dict (`...downsample.module.1.filt`)."""

    def __init__(self, channels, pad_type="replicate", filt_size=5, stride=2, pad_off=0):
        super().__init__()
        self.filt_size, self.stride, self.pad_off = filt_size, stride, pad_off
        lo, hi = (filt_size - 1) // 2 + pad_off, math.ceil((filt_size - 1) / 2) + pad_off
        self.pad = _PAD_LAYERS[pad_type]([lo, hi, lo, hi])
        a = torch.tensor(_BINOMIAL[filt_size])
        filt = a[:, None] * a[None, :]
        filt = filt / filt.sum()
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        if self.filt_size == 1:
            x = self.pad(x) if self.pad_off else x
            return x[:, :, :: self.stride, :: self.stride]
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=x.shape[1])


class MaxBlurpool(nn.Module):
    """TE `maxblurpool`: `module = Sequential(MaxPool2d(2, stride 1), BlurPool(replicate, 5, s2))`."""

    def __init__(self, channels, pad_type="replicate", filt_size=5):
        super().__init__()
        self.module = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=1),
                                    BlurPool(channels, pad_type=pad_type, filt_size=filt_size, stride=2))

    def forward(self, x):
        return self.module(x)


class ConvBlurpool(nn.Module):
    """TE `convblurpool`: `module = Sequential(Conv2d 3x3 s1 p1, BlurPool(replicate, 5, s2))`; the conv's
    padding_mode is 'zeros' for v1 and 'replicate' for v2 — independent of `use_replicationpad`."""

    def __init__(self, channels, pad_type="replicate", filt_size=5, version="v1"):
        super().__init__()
        padding_mode = {"v1": "zeros", "v2": "replicate"}[version]
        self.module = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, padding_mode=padding_mode),
            BlurPool(channels, pad_type=pad_type, filt_size=filt_size, stride=2))

    def forward(self, x):
        return self.module(x)


def make_downsampler(method, channels, use_replicationpad, version):
    """TE's four encoder downsamplers (spec §2.4); taming is 'strided_conv' with v1 semantics."""
    if method == "strided_conv":
        return Downsample(channels, use_replicationpad=use_replicationpad, version=version)
    if method == "convblurpool":
        return ConvBlurpool(channels, pad_type="replicate", filt_size=5, version=version)
    if method == "maxblurpool":
        return MaxBlurpool(channels, pad_type="replicate", filt_size=5)
    if method == "maxpool":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    raise ValueError(f"unknown downsampling_method {method!r}")


# ----------------------------------------------------------------------------------------------
# Encoder / Decoder (spec §1.2, TE options §2.4)
# ----------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, in_channels=3,
                 double_z=False, dropout=0.0, downsampling_method="strided_conv", use_replicationpad=False,
                 version="v1", **ignore):
        super().__init__()
        self.num_resolutions, self.num_res_blocks, self.resolution = len(ch_mult), num_res_blocks, resolution
        rp = use_replicationpad
        self.conv_in = conv3x3(in_channels, ch, rp)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, dropout=dropout, use_replicationpad=rp))
                block_in = block_out
                if curr_res in attn_resolutions:  # resolution *before* this level's downsample
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = make_downsampler(downsampling_method, block_in, rp, version)
                curr_res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout, use_replicationpad=rp)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout, use_replicationpad=rp)
        self.norm_out = Normalize(block_in)
        self.conv_out = conv3x3(block_in, 2 * z_channels if double_z else z_channels, rp)

    def forward(self, x):
        h = self.conv_in(x)
        for i_level in range(self.num_resolutions):
            lvl = self.down[i_level]
            for i_block in range(self.num_res_blocks):
                h = lvl.block[i_block](h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = lvl.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """taming Decoder (unchanged in TE). `up` is built from the deepest level down and *prepended*
    (`insert(0, ...)`), so `up[i]` is level i; up[i] has num_res_blocks+1 blocks. No output tanh."""

    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels,
                 dropout=0.0, **ignore):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.up = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = Upsample(block_in)
                curr_res *= 2
            self.up.insert(0, up)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            lvl = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = lvl.block[i_block](h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[i_block](h)
            if i_level != 0:
                h = lvl.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------
# Quantizer and VQModel (spec §1.3, §2.2, §2.3)
# ----------------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """Euclidean nearest-code quantizer with TE's (non-legacy) loss placement:
    L_vq = beta * mean((sg[z_q] - z)^2) + mean((z_q - sg[z])^2); straight-through output."""

    def __init__(self, n_embed, embed_dim, beta=0.25):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = n_embed, embed_dim, beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, z):
        """z: (B,C,H,W) -> indices (B,H,W) of argmin_k ||z||^2 + ||e_k||^2 - 2 z.e_k (spec §2.3)."""
        b, c, h, w = z.shape
        zf = z.detach().permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight.detach()
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * zf @ e.t()
        return d.argmin(1).reshape(b, h, w)

    def forward(self, z, beta=None):
        """Returns (z_q straight-through (B,C,H,W), L_vq scalar, indices (B,H,W)).
        Lookup by index == TE's one-hot @ E (both select the row exactly)."""
        beta = self.beta if beta is None else beta
        idx = self.nearest(z)
        zq = self.embedding(idx).permute(0, 3, 1, 2)  # (B,C,H,W); carries the codebook gradient
        loss = beta * torch.mean((zq.detach() - z) ** 2) + torch.mean((zq - z.detach()) ** 2)
        zq_st = z + (zq - z).detach()
        return zq_st, loss, idx

    def ortho_loss(self, coef):
        """TE orthogonality regulariser, force_emb_len_1=False (spec §2.2):
        coef * sum((Ê Êᵀ - I)^2) / n^2 with rows of Ê l2-normalised."""
        en = F.normalize(self.embedding.weight, p=2, dim=1)
        diff = en @ en.t() - torch.eye(self.n_embed, dtype=en.dtype, device=en.device)
        return coef * diff.pow(2).sum() / (self.n_embed ** 2)


class VQModel(nn.Module):
    """encoder -> quant_conv (1x1 z->embed) -> quantize -> post_quant_conv (1x1 embed->z) -> decoder."""

    def __init__(self, ddconfig, n_embed, embed_dim, beta=0.25):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=beta)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        """Returns (z = quant_conv(encoder(x)) i.e. the pre-quantization latent, indices (B,H,W),
        z_q (straight-through, BCHW))."""
        z = self.quant_conv(self.encoder(x))
        zq, _, idx = self.quantize(z)
        return z, idx, zq

    def decode(self, zq):
        return self.decoder(self.post_quant_conv(zq))

    def forward(self, x):
        _, idx, zq = self.encode(x)
        return self.decode(zq), idx

    def get_last_layer(self):
        return self.decoder.conv_out.weight


# ----------------------------------------------------------------------------------------------
# PatchGAN discriminator (spec §1.4)
# ----------------------------------------------------------------------------------------------


def weights_init(m):
    """taming's init: Conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0. Conv biases keep
    PyTorch's default init (taming does not touch them)."""
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class NLayerDiscriminator(nn.Module):
    """pix2pix PatchGAN: Sequential `main` of Conv4x4 s2 p1 + LReLU(0.2); (n_layers-1) x [Conv4x4 s2 p1
    (no bias), BN, LReLU]; Conv4x4 s1 p1 (no bias), BN, LReLU; Conv4x4 s1 p1 -> 1. Keys main.{i}.*"""

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.main = nn.Sequential(*seq)

    def forward(self, x):
        return self.main(x)


# ----------------------------------------------------------------------------------------------
# Perceptual loss (spec §1.4 LPIPS structure, with a Tessera-defined in-domain backbone)
# ----------------------------------------------------------------------------------------------


class VGG16Features(nn.Module):
    """Shape-only stand-in for taming's LPIPS `vgg16` (random weights; torchvision is not available):
    torchvision VGG16 `features[0:30]` split into slice1..slice5 = [0:4],[4:9],[9:16],[16:23],[23:30]
    with the original indices as child names (keys slice1.0.weight, ..., slice5.28.weight), taps
    relu1_2, relu2_2, relu3_3, relu4_3, relu5_3. Used only by the benchmark's `--perceptual vgg16`."""

    chns = (64, 128, 256, 512, 512)

    def __init__(self):
        super().__init__()
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        bounds = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
        for s, (lo, hi) in enumerate(bounds, start=1):
            sl = nn.Sequential()
            for i in range(lo, hi):
                sl.add_module(str(i), layers[i])
            setattr(self, f"slice{s}", sl)

    def forward(self, x):
        taps = []
        for s in range(1, 6):
            x = getattr(self, f"slice{s}")(x)
            taps.append(x)
        return taps


class ScalingLayer(nn.Module):
    """LPIPS input scaling (x - shift) / scale; buffers `shift`, `scale` of shape (1,3,1,1)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x):
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """taming/LPIPS NetLinLayer: `model = Sequential([Dropout(0.5)] if use_dropout else [], Conv1x1(C,1,
    bias=False))`. Hence the weight key is `lin{i}.model.1.weight` with dropout and
    `lin{i}.model.0.weight` without it (exactly as taming names them in either case)."""

    def __init__(self, chn_in, chn_out=1, use_dropout=False):
        super().__init__()
        layers = [nn.Dropout(0.5)] if use_dropout else []
        layers += [nn.Conv2d(chn_in, chn_out, 1, stride=1, padding=0, bias=False)]
        self.model = nn.Sequential(*layers)


def normalize_tensor(x, eps=1e-10):
    """Unit-normalise over channels: x / (sqrt(sum_c x^2) + eps)."""
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


class LPIPSLike(nn.Module):
    """taming LPIPS forward with a pluggable backbone (spec §1.4): scale both inputs, take the backbone
    taps, unit-normalise over channels, squared difference, lin{i} (1x1, no bias), spatial mean, sum over
    taps -> (B,1,1,1). Keys: scaling_layer.{shift,scale}, net.<backbone keys>, lin{i}.model.{0|1}.weight.
    All parameters are frozen (requires_grad=False) as in taming."""

    def __init__(self, backbone, channels, dropout=False):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = backbone
        self.chns = list(channels)
        for i, c in enumerate(self.chns):
            setattr(self, f"lin{i}", NetLinLayer(c, use_dropout=dropout))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, input, target):
        outs0 = self.net(self.scaling_layer(input))
        outs1 = self.net(self.scaling_layer(target))
        val = 0
        for i in range(len(self.chns)):
            diff = (normalize_tensor(outs0[i]) - normalize_tensor(outs1[i])) ** 2
            val = val + getattr(self, f"lin{i}").model(diff).mean([2, 3], keepdim=True)
        return val


# ----------------------------------------------------------------------------------------------
# One full training step (spec §1.4, §1.5, §2.2, §2.8)
# ----------------------------------------------------------------------------------------------


def hinge_d_loss(logits_real, logits_fake):
    return 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))


def make_optimizers(model, disc, lr):
    """taming/TE configure_optimizers: two Adam(betas=(0.5, 0.9)) at the same lr (spec §1.5)."""
    opt_ae = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    return opt_ae, opt_disc


def vq_training_step(model, disc, perceptual, x, opt_ae, opt_disc, global_step, disc_start, disc_weight=0.8,
                     codebook_weight=1.0, beta=0.25, ortho_weight=0.0, perceptual_weight=1.0, disc_factor=1.0,
                     pixel="l1"):
    """taming VQLPIPSWithDiscriminator (hinge) generator step, then discriminator step, the way
    PyTorch-Lightning 1.0 runs `training_step` once per optimizer:

    generator (optimizer_idx 0):
        L_nll = mean(|x - x̂| + w_p * LPIPS(x, x̂)),  g = -mean(D(x̂))     ((x - x̂)² for pixel="l2")
        λ     = clamp(||∇_W L_nll|| / (||∇_W g|| + 1e-4), 0, 1e4).detach() * disc_weight,
                W = decoder.conv_out.weight
        f     = disc_factor if global_step >= disc_start else 0
        L_G   = L_nll + λ f g + codebook_weight * (L_vq + L_ortho)        (TE: qloss = L_vq + L_ortho)
      The discriminator's parameters are frozen during this step (Lightning's toggle_optimizer), so
      it collects no gradient from g; BatchNorm still runs in train mode and updates its stats.
    discriminator (optimizer_idx 1):
      Lightning calls training_step again, i.e. the autoencoder forward is *recomputed with the just-
      updated weights* (done here under no_grad: only x̂.detach() is used). D(x) and D(x̂) are two
      separate forward calls (separate BatchNorm batch statistics).
        L_D = f * 0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(x̂))))
      (taming also evaluates LPIPS/L1 in this call but never uses them; skipped here.)
    The perceptual module's train/eval mode is left to the caller (taming's LPIPS is switched to train
    mode by Lightning, so its Dropout(0.5) is active; spec §13.3). Returns a dict of Python floats.
    """
    model.train()
    disc.train()
    f = disc_factor if global_step >= disc_start else 0.0

    # ---- generator step
    for p in disc.parameters():
        p.requires_grad_(False)
    z = model.quant_conv(model.encoder(x))
    zq, l_vq, idx = model.quantize(z, beta=beta)
    l_ortho = model.quantize.ortho_loss(ortho_weight)  # TE always evaluates it (0 when coef = 0)
    qloss = l_vq + l_ortho
    xrec = model.decode(zq)
    pixel_loss = torch.abs(x - xrec) if pixel == "l1" else (x - xrec) ** 2
    p_loss = perceptual(x, xrec)
    nll = torch.mean(pixel_loss + perceptual_weight * p_loss)
    logits_fake = disc(xrec)
    g_loss = -torch.mean(logits_fake)
    last = model.get_last_layer()
    nll_grads = torch.autograd.grad(nll, last, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    d_weight = torch.clamp(torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4), 0.0, 1e4).detach() * disc_weight
    loss = nll + d_weight * f * g_loss + codebook_weight * qloss
    opt_ae.zero_grad(set_to_none=True)
    loss.backward()
    opt_ae.step()
    for p in disc.parameters():
        p.requires_grad_(True)

    # ---- discriminator step (fresh autoencoder forward with the updated weights)
    with torch.no_grad():
        xrec_d, _ = model(x)
    logits_real = disc(x.detach())
    logits_fake_d = disc(xrec_d.detach())
    d_loss = f * hinge_d_loss(logits_real, logits_fake_d)
    opt_disc.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_disc.step()

    return {
        "total_loss": loss.item(), "quant_loss": qloss.item(), "vq_loss": l_vq.item(), "ortho_loss": l_ortho.item(),
        "nll_loss": nll.item(), "pixel_loss": pixel_loss.mean().item(), "p_loss": p_loss.mean().item(),
        "d_weight": float(d_weight), "disc_factor": float(f), "g_loss": g_loss.item(), "disc_loss": d_loss.detach().item(),
        "logits_real": logits_real.mean().item(), "logits_fake": logits_fake_d.mean().item(),
    }

"""The VAE train step of jaxgen.models.vae written in PyTorch (eager, channels-last), layer for layer,
so benchmarks/train_step.py can time the same work side by side. Categorical likelihood only."""
import time

import numpy as np


def build(latent_dim: int, channels: tuple[int, ...], image_shape: tuple[int, int, int], num_levels: int,
          upsample: str):
    import torch
    from torch import nn

    height, width, chans = image_shape
    scale = 2 ** len(channels)

    class Up(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            if upsample == "transpose":  # 4x4 stride-2 'SAME' transposed conv: padding 1
                self.op = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
            else:
                self.op = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))

        def forward(self, x):
            return self.op(x)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            enc = [nn.Conv2d(chans, channels[0], 3, padding=1), nn.SiLU()]
            cin = channels[0]
            for c in channels:
                enc += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
                cin = c
            self.enc = nn.Sequential(*enc, nn.Flatten(), nn.Linear(cin * (height // scale) * (width // scale),
                                                                  2 * latent_dim))
            self.fc = nn.Linear(latent_dim, (height // scale) * (width // scale) * channels[-1])
            dec, cin = [], channels[-1]
            for c in reversed(channels):
                dec += [Up(cin, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
                cin = c
            self.dec = nn.Sequential(*dec, nn.Conv2d(cin, chans * num_levels, 3, padding=1))

        def loss(self, x_int):
            x = x_int.float() * (2.0 / (num_levels - 1)) - 1.0
            mu, logvar = self.enc(x).chunk(2, dim=-1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            h = torch.nn.functional.silu(self.fc(z)).view(-1, channels[-1], height // scale, width // scale)
            logits = self.dec(h.contiguous(memory_format=torch.channels_last))
            logits = logits.view(-1, chans, num_levels, height, width)
            logp = torch.log_softmax(logits, dim=2).gather(2, x_int.long().unsqueeze(2)).sum((1, 2, 3, 4))
            kl = 0.5 * (logvar.exp() + mu ** 2 - 1.0 - logvar).sum(-1)
            return (kl - logp).mean()

    return VAE().to(memory_format=torch.channels_last)


def time_train_step(config, images: np.ndarray, steps: int, threads: int) -> dict:
    """ms per Adam step of the torch mirror on batches of config.train.batch_size from `images`
    (uint8 [N, H, W, C])."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = config.model
    model = build(m.latent_dim, tuple(m.channels), images.shape[1:], 17 if images.max() <= 16 else 256, m.upsample)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy()).contiguous(memory_format=torch.channels_last)
    b = config.train.batch_size
    rng = np.random.default_rng(0)

    def step():
        idx = torch.from_numpy(rng.choice(len(x_all), b, replace=False))
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x_all[idx])
        loss.backward()
        opt.step()
        return loss

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {"ms_per_step": 1e3 * seconds / steps, "images_per_s": b * steps / seconds, "compile_s": first,
            "torch": torch.__version__, "threads": threads}

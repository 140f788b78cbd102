import torch

from cl_moo import make_adam
from cl_moo.optim import fused_supported


def test_make_adam_uses_the_fused_kernel_on_cpu_and_matches_default_adam():
    torch.manual_seed(0)
    a = torch.nn.Linear(30, 20)
    b = torch.nn.Linear(30, 20)
    b.load_state_dict(a.state_dict())
    fused = make_adam(a.parameters(), lr=1e-2, betas=(0.8, 0.99))
    plain = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.8, 0.99))
    assert fused.defaults["fused"] is True and not plain.defaults.get("fused")
    for _ in range(5):
        x = torch.randn(16, 30)
        for net, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fused_needs_floating_point_parameters():
    assert not fused_supported([])
    assert not fused_supported([torch.zeros(3, dtype=torch.int64)])
    assert fused_supported([torch.zeros(3)])

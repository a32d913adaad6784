import time, torch, sys
torch.set_num_threads(1)
iters = int(sys.argv[1]) if len(sys.argv) > 1 else 5
LAYERS = [("encoder.conv_in",1,28,32,3,1,1),("down0.downsample",32,29,32,3,2,0),("down1.shortcut",32,14,64,1,1,0),
("down1.downsample",64,15,64,3,2,0),("encoder.conv_out",64,7,8,3,1,1),("quant_conv",8,7,8,1,1,0),
("decoder.conv_in",4,7,64,3,1,1),("up2.shortcut",64,28,32,1,1,0),("decoder.conv_out",32,28,1,3,1,1)]
def best(f):
    f(); b = 1e9
    for _ in range(iters):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b * 1e3
for name, cin, side, cout, k, s, p in LAYERS:
    conv = torch.nn.Conv2d(cin, cout, k, s, p)
    x = torch.randn(64, cin, side, side, requires_grad=True)
    y = conv(x); dy = torch.randn_like(y)
    with torch.no_grad():
        fwd = best(lambda: conv(x))
    # backward: input and weight together (PyTorch computes both in one convolution_backward)
    def bwd():
        y = conv(x); x.grad = None; conv.weight.grad = None; conv.bias.grad = None
        torch.autograd.backward(y, dy)
    both = best(bwd) - fwd
    print(f"{name:<18} fwd {fwd:7.2}  bwd(input+weight) {both:7.2} ms")

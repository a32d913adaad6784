"""A `diffuse clip train` checkpoint in transformers: CLIPTokenizer reads its tokenizer/, CLIPModel its weights and
CLIPTextModel its text_encoder/. Prints transformers' zero-shot accuracy on the shipped Fashion-MNIST test images (to
compare with `diffuse clip eval`) and checks that text_encoder/ is the CLIPModel's text tower.

Written for transformers 5.25.0 and torch 2.15 (CPU), run from the repository root:

    /opt/torchenv/bin/python scripts/clip_transformers_check.py runs/fashion-clip/step-800
"""
import gzip, sys, numpy as np, torch
from transformers import CLIPModel, CLIPTokenizer, CLIPTextModel
run = sys.argv[1]
tok = CLIPTokenizer.from_pretrained(run + "/tokenizer")
model = CLIPModel.from_pretrained(run).eval()
text = CLIPTextModel.from_pretrained(run + "/text_encoder").eval()
b = gzip.open("data/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
x = torch.tensor(np.frombuffer(b, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 127.5 - 1)
y = np.frombuffer(gzip.open("data/fashion-mnist/t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
prompts = [f"a photo of {'an' if c[0] in 'aeiou' else 'a'} {c}" for c in classes]
ids = tok(prompts, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
with torch.no_grad():
    t = model.get_text_features(input_ids=ids)
    t = t.pooler_output if hasattr(t, "pooler_output") else t
    t = t / t.norm(dim=-1, keepdim=True)
    v = model.get_image_features(pixel_values=x)
    v = v.pooler_output if hasattr(v, "pooler_output") else v
    v = v / v.norm(dim=-1, keepdim=True)
    acc = ((v @ t.T).argmax(1).numpy() == y).mean()
    a = text(input_ids=ids).last_hidden_state
    b2 = model.text_model(input_ids=ids).last_hidden_state
print("transformers zero-shot accuracy", acc)
assert (a - b2).abs().max().item() == 0.0, "text_encoder/ differs from the CLIPModel's text tower"

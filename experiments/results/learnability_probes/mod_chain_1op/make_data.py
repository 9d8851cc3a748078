"""Data of the mod_chain_1op probe: mod-10 chains of 1 / 2 / 3 operations (level = operations),
written to ./mod_chain1/{train,val,test}.jsonl; level 1 holds back 50 test + 25 validation of its 300 prompts."""
import json, random, sys
def mod_chain1(rng, level):
    value = rng.randrange(10); prompt = str(value)
    for _ in range(level):
        op, b = rng.choice("+-*"), rng.randrange(10)
        value = {"+": value + b, "-": value - b, "*": value * b}[op] % 10
        prompt += op + str(b)
    return prompt, str(value)
for name, fn in [("mod_chain1", mod_chain1)]:
    import os; os.makedirs(name, exist_ok=True)
    held = set()
    for split, n0 in [("test", 200), ("val", 100), ("train", 6667)]:
        rows = []
        for level in (1, 2, 3):
            rng = random.Random(f"{name}-{split}-{level}")
            k = 0
            n = n0 if not (name == "mod_chain1" and level == 1 and split != "train") else n0 // 4
            while k < n:
                p, a = fn(rng, level)
                if p in held: continue
                if split != "train": held.add(p)
                rows.append({"prompt": p, "answer": a, "difficulty": level}); k += 1
        with open(f"{name}/{split}.jsonl", "w") as f:
            for r in rows: f.write(json.dumps(r) + "\n")

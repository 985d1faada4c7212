"""Tiny hand-written structural multipliers (assign-level gates) for the flow tests."""


def array_multiplier(n: int, m: int, top: str) -> str:
    """Unsigned n x m array multiplier: AND partial products, rows summed by ripple-carry adders."""
    lines, wires = [], []

    def wire(name: str, expr: str) -> str:
        wires.append(name)
        lines.append(f"  assign {name} = {expr};")
        return name

    acc = [wire(f"pp0_{i}", f"a[{i}] & b[0]") for i in range(n)]
    out = [acc[0]]
    acc = acc[1:]
    for j in range(1, m):
        row = [wire(f"pp{j}_{i}", f"a[{i}] & b[{j}]") for i in range(n)]
        carry, new = None, []
        for i in range(n):
            x, y = row[i], acc[i] if i < len(acc) else None
            if y is None and carry is None:
                new.append(x)
                continue
            if y is None or carry is None:
                z = y if carry is None else carry
                s = wire(f"s{j}_{i}", f"{x} ^ {z}")
                carry = wire(f"c{j}_{i}", f"{x} & {z}")
            else:
                s = wire(f"s{j}_{i}", f"{x} ^ {y} ^ {carry}")
                carry = wire(f"c{j}_{i}", f"({x} & {y}) | ({x} & {carry}) | ({y} & {carry})")
            new.append(s)
        new.append(carry)
        out.append(new[0])
        acc = new[1:]
    out += acc
    body = "\n".join(lines + [f"  assign y[{k}] = {b};" for k, b in enumerate(out)])
    return (
        f"module {top}(input [{n - 1}:0] a, input [{m - 1}:0] b, output [{n + m - 1}:0] y);\n"
        f"  wire {', '.join(wires)};\n{body}\nendmodule\n"
    )

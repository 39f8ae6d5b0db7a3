"""add_scalar on the caller's thread, and a no-op method call for scale."""


class Noop:
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        pass


def test_add_scalar(benchmark, writer):
    benchmark.group = "add_scalar (caller's thread)"
    benchmark(writer.add_scalar, "loss", 0.5, 10)


def test_noop_method(benchmark):
    benchmark.group = "add_scalar (caller's thread)"
    benchmark(Noop().add_scalar, "loss", 0.5, 10)


def test_thousand_scalars_then_flush(benchmark, writer):
    benchmark.group = "1000 add_scalar + flush"

    def run():
        for i in range(1000):
            writer.add_scalar("loss", 0.5, i)
        writer.flush()

    benchmark.pedantic(run, rounds=5 if type(writer).__module__.startswith(("torch", "tensorboardX")) else 50)

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from splitbed.codecs import REGISTRY, CalibrationStore, WireFormatError, decode, get_codec, wire
from splitbed.codecs.disc_calibration import Calibration, outer_per_position, project, quadratic_forms
from splitbed.errors import UserError
from splitbed.models import get_model
from splitbed.models.datasets import batches, calibration_samples, evaluation_samples

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((1, 16, 7, 7)) * 3).astype(np.float32)


@pytest.fixture(scope="module")
def fmnist_disc(tmp_path_factory):
    """A real DISC calibration: the Fashion-MNIST CNN at conv2, fitted on training images."""
    model = get_model("fmnist_cnn")
    store = CalibrationStore(tmp_path_factory.mktemp("cal"))
    inputs = torch.stack([s.tensor for s in calibration_samples(model)][:300])
    cal = store.ensure(model, "conv2", lambda: inputs)
    test, labels, _ = next(batches(evaluation_samples(model), 500))
    with torch.no_grad():
        acts = model.head("conv2")(test).numpy()
    return model, store, cal, acts, test


@pytest.mark.parametrize("name", ["raw", "zstd"])
def test_lossless_codecs_round_trip_exactly(name):
    assert np.array_equal(decode(get_codec(name).encode(X)), X)


def test_lossy_baselines_stay_close():
    span = X.max() - X.min()
    assert np.abs(decode(get_codec("int8").encode(X)) - X).max() <= span / 255
    jpeg = decode(get_codec("jpeg", quality=95).encode(X))
    assert jpeg.shape == X.shape and np.abs(jpeg - X).mean() < span / 50


def test_rgb_jpeg_sends_an_image_as_one_colour_picture_smaller_than_three_grey_tiles():
    y, x = np.mgrid[0:64, 0:64].astype(np.float32) / 64
    image = np.stack([np.sin(6 * x) + y, np.cos(5 * y) * x, x * y])[None] * 2 - 1  # smooth, like a photo
    grey, colour = get_codec("jpeg", quality=85), get_codec("jpeg", quality=85, rgb=True)
    back = decode(colour.encode(image))
    assert back.shape == image.shape and np.abs(back - image).mean() < 0.05
    assert len(colour.encode(image)) < 0.85 * len(grey.encode(image))  # photos: ~0.4 (chroma at 4:2:0)
    with pytest.raises(UserError, match="3-channel"):
        colour.encode(np.zeros((1, 4, 8, 8), np.float32))


def test_encoding_is_deterministic(fmnist_disc):
    _, _, cal, acts, _ = fmnist_disc
    for codec in (get_codec("int8"), get_codec("jpeg"), get_codec("disc", calibration=cal, step=1.2)):
        assert codec.encode(acts[:1]) == codec.encode(acts[:1])


def test_disc_keeps_predictions_and_shrinks_data(fmnist_disc):
    model, store, cal, acts, test = fmnist_disc
    codec = get_codec("disc", calibration=cal, step=1.0)
    messages = [codec.encode(acts[i : i + 1]) for i in range(len(acts))]
    rebuilt = np.concatenate([decode(m, store) for m in messages])
    with torch.no_grad():
        ref = model.tail("conv2")(torch.from_numpy(acts)).argmax(1)
        got = model.tail("conv2")(torch.from_numpy(rebuilt)).argmax(1)
    assert (ref == got).float().mean() > 0.97
    assert rebuilt.min() >= 0  # post-ReLU activations: coding noise below 0 is clipped away
    assert np.mean([len(m) for m in messages]) < 0.1 * acts[0].size * 4


def test_disc_zstd_and_ans_decode_to_the_same_tensor(fmnist_disc):
    _, store, cal, acts, _ = fmnist_disc
    a = decode(get_codec("disc", calibration=cal, entropy="ans", step=0.7).encode(acts[:2]), store)
    b = decode(get_codec("disc", calibration=cal, entropy="zstd", step=0.7).encode(acts[:2]), store)
    assert np.array_equal(a, b)


def test_disc_transform_is_the_tails_metric_klt_and_inverts_exactly(fmnist_disc):
    _, _, cal, acts, _ = fmnist_disc
    assert np.allclose(cal.synthesis @ cal.analysis.T, np.eye(len(cal.mean)), atol=1e-8)
    z = np.einsum("ck,nchw->nkhw", cal.analysis, acts.astype(np.float64) - cal.mean[None, :, None, None])
    pixels = z.transpose(0, 2, 3, 1).reshape(-1, z.shape[1])
    covariance = np.cov(pixels.T)  # evaluation data: near-diagonal, decreasing, like the fitted variance
    off = covariance - np.diag(np.diag(covariance))
    assert np.abs(off).max() < 0.2 * np.diag(covariance).max()
    assert np.all(np.diff(cal.variance) <= 1e-9)


def test_fisher_terms_from_outer_products_equal_the_squared_coefficients_summed():
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(5, 4, 3, 2))
    transform = rng.normal(size=(4, 4))
    direct = (project(grads, transform) ** 2).sum(0)
    from_outer = quadratic_forms(outer_per_position(grads), transform, 3, 2)
    assert from_outer.shape == (4, 3, 2)
    np.testing.assert_allclose(from_outer, direct, rtol=1e-10)


def test_a_calibration_too_wide_for_one_gradient_pass_takes_two_and_fits_the_same(monkeypatch):
    from splitbed.codecs import disc_calibration

    model = get_model("fmnist_cnn")
    inputs = torch.stack([s.tensor for s in calibration_samples(model)][:64])
    one = disc_calibration.fit(model, "conv2", inputs)
    monkeypatch.setattr(disc_calibration, "OUTER_PRODUCT_BYTES", 0)
    two = disc_calibration.fit(model, "conv2", inputs)
    for name in ("variance", "fisher", "fisher_pixel", "scale"):
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=1e-6, atol=1e-9, err_msg=name)


def test_matrix_dct_equals_scipys_and_inverts():
    from scipy.fft import dctn

    from splitbed.codecs.disc import dct_2d, dct_matrix

    maps = RNG.standard_normal((5, 7, 12)).astype(np.float32)
    rows, cols = dct_matrix(7), dct_matrix(12)
    forward = dct_2d(maps, rows, cols)
    assert np.allclose(forward, dctn(maps, axes=(1, 2), norm="ortho"), atol=1e-5)
    assert np.allclose(dct_2d(forward, rows.T, cols.T), maps, atol=1e-5)


def test_disc_escapes_carry_symbols_beyond_their_table_exactly(fmnist_disc):
    """Values far outside anything calibration saw still decode to the right bin: the ANS tables
    end at a bound set by each group's scale and larger symbols travel as escapes."""
    _, store, cal, acts, _ = fmnist_disc
    x = acts[:1].copy()
    spike = 40 * float(x.std())
    x[0, :, 1, 1] += spike  # an outlier in every channel
    message = get_codec("disc", calibration=cal, step=0.5, deadzone=0.5).encode(x)
    payload = wire.unpack(message).payload
    length, offset = wire.read_varint(payload, 0, "length")
    assert len(payload) > offset + length  # escapes follow the rANS bytes
    ans = decode(message, store)
    zstd = decode(get_codec("disc", calibration=cal, step=0.5, deadzone=0.5, entropy="zstd").encode(x), store)
    assert np.array_equal(ans, zstd)  # the same symbols either way, escapes included
    target = np.minimum(x[0, :, 1, 1], cal.high)  # decoding clips to the range calibration saw
    assert np.abs(ans[0, :, 1, 1] - target).mean() < 0.1 * spike


def test_wire_header_is_compact_for_small_tensors(fmnist_disc):
    """Header bytes matter on small maps (Fashion-MNIST conv3 sends ~100 bytes in all)."""
    _, _, cal, acts, _ = fmnist_disc
    message = get_codec("disc", calibration=cal, step=1.0).encode(acts[:1])
    parsed = wire.unpack(message)
    # fixed 5, shape (1, 64, 7, 7) as 4 one-byte varints, parameter length 1, DISC's 15, payload length, CRC 4
    assert len(message) - len(parsed.payload) == 5 + 4 + 1 + 15 + len(wire.varint(len(parsed.payload))) + 4


@given(st.integers(min_value=0, max_value=2**35 - 1))
def test_varints_round_trip(n):
    encoded = wire.varint(n)
    assert wire.read_varint(encoded + b"tail", 0, "x") == (n, len(encoded))


def test_disc_calibration_file_round_trips_without_pickle(fmnist_disc, tmp_path):
    _, _, cal, _, _ = fmnist_disc
    cal.save(tmp_path / "c.npz")
    again = Calibration.load(tmp_path / "c.npz")
    assert again.fingerprint == cal.fingerprint and again.split == "conv2"


def test_disc_refuses_a_foreign_calibration(fmnist_disc, tmp_path):
    _, _, cal, acts, _ = fmnist_disc
    message = get_codec("disc", calibration=cal).encode(acts[:1])
    with pytest.raises(WireFormatError, match="fingerprint"):
        decode(message, CalibrationStore(tmp_path))


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError, match="quality"):
        get_codec("jpeg", quality=0)
    with pytest.raises(UserError, match="no parameter"):
        get_codec("int8", bits=4)
    with pytest.raises(UserError, match="unknown codec"):
        get_codec("webp")


def corruptions(message: bytes):
    yield message[:-1]  # truncated
    yield message[:5]
    yield b"XX" + message[2:]  # bad magic
    yield message[:2] + bytes([9]) + message[3:]  # future version
    flipped = bytearray(message)
    flipped[-3] ^= 0x40
    yield bytes(flipped)  # checksum
    yield message + b"\0"  # trailing bytes


@pytest.mark.parametrize("name", sorted(REGISTRY))  # every registered codec, also a new one
def test_corrupted_messages_raise_typed_errors(name, fmnist_disc):
    _, store, cal, acts, _ = fmnist_disc
    codec = get_codec(name, calibration=cal) if REGISTRY[name].needs_calibration else get_codec(name)
    for bad in corruptions(codec.encode(acts[:1])):
        with pytest.raises(WireFormatError):
            decode(bad, store)


def test_oversized_shape_is_refused_before_allocating():
    header = wire.pack(1, np.float32, (1, 1), b"", b"\0\0\0\0")
    assert header[wire.FIXED : wire.FIXED + 2] == b"\x01\x01"  # shape (1, 1) as two varints
    huge = header[: wire.FIXED] + wire.varint(2**34) + wire.varint(2**34) + header[wire.FIXED + 2 :]
    with pytest.raises(wire.TooLarge):
        decode(huge)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_only_raise_typed_errors(data):
    try:
        decode(data)
    except WireFormatError:
        pass  # the only acceptable failure


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_messages_decode_to_their_shape_or_raise_typed_errors(fmnist_disc, data):
    """Up to 8 bytes of a message changed: the CRC-32 refuses it (nothing damaged decodes). Resealed with a
    fresh CRC, as a damaging sender would, the codec's own decoder meets the damage and must return
    float32 of the header's shape or raise a WireFormatError (CorruptPayload), never anything else."""
    _, store, cal, acts, _ = fmnist_disc
    name = data.draw(st.sampled_from(sorted(REGISTRY)))
    codec = get_codec(name, calibration=cal) if REGISTRY[name].needs_calibration else get_codec(name)
    original = codec.encode(acts[:1])
    crc_at = len(original) - len(wire.unpack(original).payload) - 4
    message = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position] = data.draw(st.integers(0, 255))
    resealed = data.draw(st.booleans())
    if resealed:
        message[crc_at : crc_at + 4] = wire.checksum(bytes(message[:crc_at]), bytes(message[crc_at + 4 :]))
    try:
        out = decode(bytes(message), store)
    except WireFormatError:
        return  # typed: the only acceptable failure (any other exception fails the test)
    if not resealed:
        assert bytes(message) == original, "a damaged message decoded: the CRC let it through"
    header_shape = wire.unpack(bytes(message)).shape
    assert out.shape == header_shape and out.dtype == np.float32, (name, out.shape, out.dtype, header_shape)


def test_any_damage_to_a_disc_message_is_refused(fmnist_disc):
    """rANS alone cannot tell every damaged stream from a valid one (test below); the wire format's CRC-32
    over header and payload can: every cut, an added byte and every single-bit flip anywhere raise
    WireFormatError, so the server answers a damaged request with an error, never with a prediction."""
    _, store, cal, acts, _ = fmnist_disc
    message = get_codec("disc", calibration=cal, step=1.0).encode(acts[:1])
    flips = [message[:i] + bytes([message[i] ^ 1 << bit]) + message[i + 1 :]
             for i in range(len(message)) for bit in range(8)]
    for bad in [message[:n] for n in range(len(message))] + [message + b"\0"] + flips:
        with pytest.raises(WireFormatError):
            decode(bad, store)


def test_calibrate_cli_writes_one_file_per_split(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-m", "splitbed.codecs", "calibrate", "fmnist_cnn", "--splits",
                           "conv3", "--cache", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.rglob("conv3.npz"))) == 1
    bad = subprocess.run([sys.executable, "-m", "splitbed.codecs", "calibrate", "fmnist_cnn", "--splits",
                          "conv9", "--cache", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "conv9" in bad.stderr and "Traceback" not in bad.stderr


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 200), st.floats(0.5, 0.9), st.integers(0, 2**31 - 1))
def test_rans_round_trips_any_values_and_refuses_streams_it_cannot_finish(items, count, deadzone, seed):
    """The compiled coder against the numpy rule it fuses: dead-zone rounding, escapes of every
    length (one byte, three bytes), two interleaved states. On damage, rANS refuses an added byte and any
    stream it cannot finish, and never reads out of bounds, but its only other check is the final states:
    a flipped bit can decode to other values (13% of all single-bit flips did on 300 of these streams;
    a cut, none of 40k, though nothing guarantees it). Catching damage is the wire format's CRC-32:
    test_any_damage_to_a_disc_message_is_refused."""
    from splitbed.codecs import rans
    from splitbed.codecs.disc import laplace_table

    rng = np.random.default_rng(seed)
    scales = [0.1, 1.0, 30.0]
    bounds = np.array([2, 8, 211], dtype=np.int32)
    tables = rans.Tables([laplace_table(s, int(b)) for s, b in zip(scales, bounds, strict=True)])
    groups = np.sort(rng.integers(0, 3, count))  # coding positions grouped by table
    ranges = np.searchsorted(groups, np.arange(4))
    order = rng.permutation(count).astype(np.int32)
    values = rng.laplace(0, np.array(scales)[groups][np.argsort(order)], (items, count)).astype(np.float32)
    values[rng.random((items, count)) < 0.05] *= 300  # escapes, short and long
    steps = rng.uniform(0.5, 2, count).astype(np.float32)
    data = rans.encode(values, deadzone, order, ranges, bounds, tables)
    q = np.copysign(np.floor(np.abs(values) + np.float32(1 - deadzone)), values)
    excess = np.abs(q[:, order]) - bounds[np.repeat(np.arange(3), np.diff(ranges))]
    if data is None:  # refused only when a symbol's excess is past what an escape can carry
        assert excess.max() > rans.MAX_EXCESS
        return
    decoded = rans.decode(data, (items, count), deadzone, steps, order, ranges, bounds, tables)
    expected = np.sign(q) * (np.abs(q) + np.float32(deadzone - 0.5)) * steps
    assert np.array_equal(decoded, expected.astype(np.float32))
    position = int(rng.integers(0, len(data)))
    damaged = data[:position] + bytes([data[position] ^ (1 << int(rng.integers(0, 8)))]) + data[position + 1 :]
    assert rans.decode(data + b"\0", (items, count), deadzone, steps, order, ranges, bounds, tables) is None
    for bad in (data[:position], damaged):
        result = rans.decode(bad, (items, count), deadzone, steps, order, ranges, bounds, tables)
        assert result is None or result.shape == decoded.shape

"""The transducer loss k2d gives ESPnet (k2d.espnet.rnnt) against sums over alignments written out by hand,
and ESPnet's greedy transducer search on a joiner whose output is known."""

import math
import sys

import numpy as np
import pytest
import torch

from k2d.espnet.rnnt import MODULE, RNNTLoss, provide_warprnnt


def path_logprob(logp, target, t, u):
    """log of the summed probability of every alignment from lattice node (t, u) to the end: at (t, u) either
    the blank (to t + 1) or the next target token (to u + 1); the last frame's final blank ends the path."""
    T, U = logp.shape[0], len(target)
    if t == T - 1 and u == U:
        return logp[t, u, 0]
    terms = []
    if t < T - 1:
        terms.append(logp[t, u, 0] + path_logprob(logp, target, t + 1, u))
    if u < U:
        terms.append(logp[t, u, target[u]] + path_logprob(logp, target, t, u + 1))
    return torch.logsumexp(torch.stack(terms), dim=0)


def test_two_frames_one_token_by_hand():
    # T = 2 frames, target [1], vocabulary {blank 0, 1, 2}: two alignments,
    # (0,0) emit 1, (0,1) blank, (1,1) blank  and  (0,0) blank, (1,0) emit 1, (1,1) blank
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.6, 0.1, 0.3]],
                                     [[0.2, 0.7, 0.1], [0.9, 0.05, 0.05]]]))
    expected = -math.log(0.3 * 0.6 * 0.9 + 0.5 * 0.7 * 0.9)
    loss = RNNTLoss(blank=0)(logits[None], torch.tensor([[1]]), torch.tensor([2]), torch.tensor([1]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_batch_of_unequal_lengths_matches_every_alignment_summed():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6, requires_grad=True)
    targets = torch.tensor([[3, 1, 5], [2, 2, 0]])
    frames, lengths = torch.tensor([5, 3]), torch.tensor([3, 2])
    loss = RNNTLoss(blank=0)(logits, targets, frames, lengths)
    brute = []
    for b in range(2):
        logp = torch.log_softmax(logits[b, : frames[b], : lengths[b] + 1].double(), dim=-1)
        brute.append(-path_logprob(logp, targets[b, : lengths[b]].tolist(), 0, 0))
    assert loss.item() == pytest.approx(torch.stack(brute).mean().item(), rel=1e-5)  # warp-transducer's mean
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1, 3:].abs().sum() == 0  # padding gets no gradient


def test_fastemit_is_refused():
    with pytest.raises(ValueError, match="FastEmit"):
        RNNTLoss(blank=0, fastemit_lambda=0.01)


def test_provides_the_module_espnet_imports(monkeypatch):
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    assert provide_warprnnt()
    from warprnnt_pytorch import RNNTLoss as Provided

    assert Provided is RNNTLoss
    assert not provide_warprnnt()  # already there: left alone


def test_espnet_greedy_search_follows_the_joiner():
    from espnet2.asr.transducer.beam_search_transducer import BeamSearchTransducer

    vocab, frames = 4, 4
    # the joiner's best token at each frame given the last emitted one (blank 0 before any):
    # frame 0: 2; frame 1 after 2: blank; frame 2 after 2: 3; frame 3 after 3: 3 again
    best = {(0, 0): 2, (1, 2): 0, (2, 2): 3, (3, 3): 3}

    class Decoder(torch.nn.Module):
        dunits, odim, blank_id = vocab, vocab, 0

        def set_device(self, device):
            pass

        def init_state(self, batch):
            return None

        def score(self, hyp, cache):  # the prediction network's output: the last token, one-hot
            return torch.nn.functional.one_hot(torch.tensor(hyp.yseq[-1]), vocab).float(), None, None

    def joint(enc_t, dec_out):
        logits = torch.full((vocab,), -5.0)
        logits[best[(int(enc_t.argmax()), int(dec_out.argmax()))]] = 5.0
        return logits

    search = BeamSearchTransducer(decoder=Decoder(), joint_network=joint, beam_size=1)
    hyp = search(torch.eye(frames))[0]
    assert hyp.yseq == [0, 2, 3, 3]


def test_stateless_prediction_by_hand():
    from k2d.espnet.rnnt import StatelessPrediction

    net = StatelessPrediction(vocab_size=4, size=2, context_size=2, dropout=0.0)
    with torch.no_grad():
        net.embed.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 3.0], [-4.0, 0.5]]))
        net.conv.weight.copy_(torch.tensor([[[0.5, 1.0]], [[2.0, -1.0]]]))  # per channel: (older, newer)
    out = net(torch.tensor([[0, 1, 2, 3]]))[0]
    # position u, per channel: relu(older weight * e[u - 1] + newer weight * e[u]); e[-1] is the padding blank's 0
    # u 0: (0, 0); u 1: (0.5*0 + 1*1, 2*0 - 1*-1); u 2: (0.5*1 + 1*2, 2*-1 - 1*3 < 0); u 3: (0.5*2 - 4 < 0, 2*3 - 0.5)
    assert out.tolist() == [[0.0, 0.0], [1.0, 1.0], [2.5, 0.0], [0.0, 5.5]]
    # only the last context_size tokens count
    assert torch.equal(net(torch.tensor([[2, 1, 2, 3]]))[0, 3], out[3])
    with pytest.raises(ValueError, match="context_size 0"):
        StatelessPrediction(4, 2, context_size=0)


def random_head(prediction: str):
    """A random transducer head (a sharpened joiner that says several things) and 30 random encoder frames."""
    from k2d.espnet.rnnt import TransducerHead

    torch.manual_seed(0)
    head = TransducerHead(vocab_size=6, encoder_size=4, prediction_size=8, joint_size=8, dropout=0.0,
                          prediction=prediction).eval()
    with torch.no_grad():
        head.joint_network.lin_out.weight.mul_(20)
    return head, torch.randn(30, 4)


@pytest.mark.parametrize("prediction", ["lstm", "stateless"])
def test_greedy_search_gives_the_same_tokens_piece_by_piece(prediction):
    from k2d.espnet.rnnt import GreedySearch

    head, frames = random_head(prediction)
    whole, at = GreedySearch(head).accept(frames)
    pieces = GreedySearch(head)
    tokens, frame_of = [], []
    for first in range(0, 30, 7):
        new, new_at = pieces.accept(frames[first : first + 7])
        tokens += new
        frame_of += new_at
    assert tokens == whole and frame_of == at and len(set(whole)) >= 2
    assert at == sorted(at) and all(0 <= f < 30 for f in at)
    # never more than max_symbols tokens at one frame
    capped, capped_at = GreedySearch(head, max_symbols=1).accept(frames)
    assert len(capped_at) == len(set(capped_at))


def test_the_stateless_head_trains_and_decodes_what_its_prediction_network_says():
    from k2d.espnet.rnnt import BLANK, GreedySearch, TransducerHead

    torch.manual_seed(0)
    head = TransducerHead(vocab_size=6, encoder_size=4, prediction_size=8, joint_size=8, dropout=0.0,
                          prediction="stateless", context_size=2)
    encoded = torch.randn(2, 5, 4)
    loss = head.loss(encoded, torch.tensor([5, 4]), torch.tensor([[3, 1, 5], [2, 2, -1]]))
    # the same loss from the parts: prediction over <blank> + tokens, joint, torchaudio's RNN-T loss
    predicted = head.decoder(torch.tensor([[BLANK, 3, 1, 5], [BLANK, 2, 2, BLANK]]))
    joint = head.joint_network(encoded.unsqueeze(2), predicted.unsqueeze(1))
    expected = RNNTLoss()(joint, torch.tensor([[3, 1, 5], [2, 2, 0]]), torch.tensor([5, 4]), torch.tensor([3, 2]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert head.decoder.conv.weight.grad.abs().sum() > 0
    # greedy search feeds the prediction network the last two tokens, blanks before the first
    search = GreedySearch(head.eval())
    assert search.state == (BLANK, BLANK)
    search.predicted, search.state = head.predict(search.state, 4, search.device)
    assert search.state == (BLANK, 4)
    assert torch.equal(search.predicted, head.decoder(torch.tensor([[BLANK, 4]]))[0, -1])
    with pytest.raises(ValueError, match="prediction must be one of lstm, stateless"):
        TransducerHead(6, 4, prediction="gru")


class TableHead:
    """A transducer whose joint network reads its probabilities from a table: (frame, tokens so far) -> the
    probabilities of blank, token 1 and token 2. The prediction network's 'output' is the index of the tokens."""

    def __init__(self, table: dict):
        self.table, self.contexts = table, sorted({tokens for _, tokens in table})

    def start(self, device):
        return ()

    def predict(self, state, token, device):
        state = state if token == 0 else (*state, token)
        return torch.tensor([float(self.contexts.index(state) if state in self.contexts else -1)]), state

    def joint_network(self, frames, predicted):  # one frame (greedy search) or a batch (beam search)
        if frames.dim() == 1:
            return self.joint_network(frames[None], predicted[None])[0]
        rows = [self.table[(int(f[0]), self.contexts[int(p[0])])] for f, p in zip(frames, predicted, strict=True)]
        return torch.tensor(rows).log()


def test_beam_search_by_hand_finds_what_greedy_search_misses():
    from k2d.espnet.rnnt import BeamSearch, GreedySearch

    head = TableHead({(0, ()): [0.40, 0.35, 0.25],
                      (1, ()): [0.90, 0.05, 0.05], (1, (1,)): [0.30, 0.10, 0.60],
                      (1, (2,)): [0.90, 0.05, 0.05], (1, (1, 1)): [1.0, 0.0, 0.0], (1, (1, 2)): [1.0, 0.0, 0.0]})
    frames = torch.tensor([[0.0], [1.0]])
    greedy = GreedySearch(head, max_symbols=1)
    greedy.accept(frames)
    assert greedy.result == ([], [])  # blank at frame 0 (0.40), blank at frame 1 (0.90): 0.36
    search = BeamSearch(head, beam=2)
    search.accept(frames)
    # frame 0 keeps () 0.40 and (1) 0.35; frame 1's best two: () 0.40 x 0.90 = 0.36, (1, 2) 0.35 x 0.60 = 0.21
    assert {k: round(float(np.exp(h.log_prob)), 6) for k, h in search.hyps.items()} == {(): 0.36, (1, 2): 0.21}
    # per token (the start counts as one): log 0.36 / 1 = -1.02 < log 0.21 / 3 = -0.52
    assert search.result == ([1, 2], [0, 1])


def test_beam_search_merges_the_paths_to_the_same_tokens_by_hand():
    from k2d.espnet.rnnt import BeamSearch

    head = TableHead({(0, ()): [0.5, 0.4, 0.1], (1, ()): [0.1, 0.8, 0.1], (1, (1,)): [0.7, 0.2, 0.1],
                      (1, (2,)): [1.0, 0.0, 0.0], (1, (1, 1)): [1.0, 0.0, 0.0]})
    search = BeamSearch(head, beam=2)
    search.accept(torch.tensor([[0.0], [1.0]]))
    # frame 1's best two: () then token 1 (0.5 x 0.8 = 0.40) and (1) then blank (0.4 x 0.7 = 0.28): both (1)
    assert list(search.hyps) == [(1,)] and float(np.exp(search.hyps[(1,)].log_prob)) == pytest.approx(0.68)
    assert search.result == ([1], [1])  # the frames of the likelier path


@pytest.mark.parametrize("prediction", ["lstm", "stateless"])
def test_beam_search_of_one_is_greedy_search_of_one_token_per_frame_and_pieces_change_nothing(prediction):
    from k2d.espnet.rnnt import BeamSearch, GreedySearch

    head, frames = random_head(prediction)
    greedy, one = GreedySearch(head, max_symbols=1), BeamSearch(head, beam=1)
    greedy.accept(frames)
    one.accept(frames)
    assert one.result == greedy.result and len(set(greedy.result[0])) >= 2
    whole, pieces = BeamSearch(head, beam=4), BeamSearch(head, beam=4)
    whole.accept(frames)
    for first in range(0, 30, 7):
        pieces.accept(frames[first : first + 7])
    assert pieces.result == whole.result and len(whole.result[0]) >= 3
    with pytest.raises(ValueError, match="keeps at least one hypothesis"):
        BeamSearch(head, beam=0)

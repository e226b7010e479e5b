"""Every published SimCLR model, as data: the table `registry.py` reads.

The models are the TF2 SavedModels of gs://simclr-checkpoints-tf2 (also
https://storage.googleapis.com/simclr-checkpoints-tf2); a name is the model's location below
the bucket root, `<root>/<name>/saved_model/saved_model.pb`.

Which: the directories the reference's `tf2/colabs/imagenet_results.ipynb` evaluates, SimCLRv2
pretrained, finetuned_1pct/10pct/100pct and supervised for 13 architectures, SimCLRv1 pretrain,
finetune_10pct and finetune_100pct at 1x/2x/4x. The reference README also announces
`simclrv2/distill_1pct` and `distill_10pct`, but no published text lists the models in them:
they are not registered.

Columns:
- `encoder_params`: trainable parameters of the ResNet encoder (no heads), counted by building
  `tf_simclr.models.ResNet` of the architecture (`tests/test_presets.py` builds them again).
  They equal the reference's own counts where a fixture has them (r50_1x_sk0, r50_1x_sk1).
- `params_m`: the published figure, in millions: the README's for v2 (the rounded count of
  every encoder variable, BatchNorm moving statistics included), the SimCLR paper's for v1
  (24, 94, 375: the trainable count).
- `top1`: published ImageNet top-1 (%): linear evaluation for pretrained models, else the
  model's own classifier; the last column says where it is published.
"""

README = "google-research/simclr README"
PAPER = "SimCLRv2 paper, Table 1"
COLAB = "google-research/simclr tf2/colabs/imagenet_results.ipynb"

# name, depth, width multiplier, selective kernels, encoder_params, params_m, top1, source
PRESETS = (
    ("simclrv2/pretrained/r50_1x_sk0", 50, 1, False, 23_508_032, 24, 71.7, README),
    ("simclrv2/pretrained/r50_1x_sk1", 50, 1, True, 35_215_584, 35, 74.6, README),
    ("simclrv2/pretrained/r50_2x_sk0", 50, 2, False, 93_907_072, 94, 75.6, README),
    ("simclrv2/pretrained/r50_2x_sk1", 50, 2, True, 140_306_048, 140, 77.7, README),
    ("simclrv2/pretrained/r101_1x_sk0", 101, 1, False, 42_500_160, 43, 73.6, README),
    ("simclrv2/pretrained/r101_1x_sk1", 101, 1, True, 64_662_304, 65, 76.3, README),
    ("simclrv2/pretrained/r101_2x_sk0", 101, 2, False, 169_771_136, 170, 77.0, README),
    ("simclrv2/pretrained/r101_2x_sk1", 101, 2, True, 257_132_224, 257, 79.0, README),
    ("simclrv2/pretrained/r152_1x_sk0", 152, 1, False, 58_143_808, 58, 74.5, README),
    ("simclrv2/pretrained/r152_1x_sk1", 152, 1, True, 88_940_896, 89, 77.2, README),
    ("simclrv2/pretrained/r152_2x_sk0", 152, 2, False, 232_253_568, 233, 77.4, README),
    ("simclrv2/pretrained/r152_2x_sk1", 152, 2, True, 353_398_528, 354, 79.4, README),
    ("simclrv2/pretrained/r152_3x_sk1", 152, 3, True, 794_704_160, 795, 79.8, PAPER),
    ("simclrv2/finetuned_1pct/r50_1x_sk0", 50, 1, False, 23_508_032, 24, 57.9, README),
    ("simclrv2/finetuned_1pct/r50_1x_sk1", 50, 1, True, 35_215_584, 35, 64.5, README),
    ("simclrv2/finetuned_1pct/r50_2x_sk0", 50, 2, False, 93_907_072, 94, 66.3, README),
    ("simclrv2/finetuned_1pct/r50_2x_sk1", 50, 2, True, 140_306_048, 140, 70.6, README),
    ("simclrv2/finetuned_1pct/r101_1x_sk0", 101, 1, False, 42_500_160, 43, 62.1, README),
    ("simclrv2/finetuned_1pct/r101_1x_sk1", 101, 1, True, 64_662_304, 65, 68.3, README),
    ("simclrv2/finetuned_1pct/r101_2x_sk0", 101, 2, False, 169_771_136, 170, 69.1, README),
    ("simclrv2/finetuned_1pct/r101_2x_sk1", 101, 2, True, 257_132_224, 257, 73.2, README),
    ("simclrv2/finetuned_1pct/r152_1x_sk0", 152, 1, False, 58_143_808, 58, 64.0, README),
    ("simclrv2/finetuned_1pct/r152_1x_sk1", 152, 1, True, 88_940_896, 89, 70.0, README),
    ("simclrv2/finetuned_1pct/r152_2x_sk0", 152, 2, False, 232_253_568, 233, 70.2, README),
    ("simclrv2/finetuned_1pct/r152_2x_sk1", 152, 2, True, 353_398_528, 354, 74.2, README),
    ("simclrv2/finetuned_1pct/r152_3x_sk1", 152, 3, True, 794_704_160, 795, 74.9, PAPER),
    ("simclrv2/finetuned_10pct/r50_1x_sk0", 50, 1, False, 23_508_032, 24, 68.4, README),
    ("simclrv2/finetuned_10pct/r50_1x_sk1", 50, 1, True, 35_215_584, 35, 72.1, README),
    ("simclrv2/finetuned_10pct/r50_2x_sk0", 50, 2, False, 93_907_072, 94, 73.9, README),
    ("simclrv2/finetuned_10pct/r50_2x_sk1", 50, 2, True, 140_306_048, 140, 77.0, README),
    ("simclrv2/finetuned_10pct/r101_1x_sk0", 101, 1, False, 42_500_160, 43, 71.4, README),
    ("simclrv2/finetuned_10pct/r101_1x_sk1", 101, 1, True, 64_662_304, 65, 75.1, README),
    ("simclrv2/finetuned_10pct/r101_2x_sk0", 101, 2, False, 169_771_136, 170, 75.8, README),
    ("simclrv2/finetuned_10pct/r101_2x_sk1", 101, 2, True, 257_132_224, 257, 78.8, README),
    ("simclrv2/finetuned_10pct/r152_1x_sk0", 152, 1, False, 58_143_808, 58, 73.0, README),
    ("simclrv2/finetuned_10pct/r152_1x_sk1", 152, 1, True, 88_940_896, 89, 76.5, README),
    ("simclrv2/finetuned_10pct/r152_2x_sk0", 152, 2, False, 232_253_568, 233, 76.6, README),
    ("simclrv2/finetuned_10pct/r152_2x_sk1", 152, 2, True, 353_398_528, 354, 79.4, README),
    ("simclrv2/finetuned_10pct/r152_3x_sk1", 152, 3, True, 794_704_160, 795, 80.1, PAPER),
    ("simclrv2/finetuned_100pct/r50_1x_sk0", 50, 1, False, 23_508_032, 24, 76.3, README),
    ("simclrv2/finetuned_100pct/r50_1x_sk1", 50, 1, True, 35_215_584, 35, 78.7, README),
    ("simclrv2/finetuned_100pct/r50_2x_sk0", 50, 2, False, 93_907_072, 94, 79.1, README),
    ("simclrv2/finetuned_100pct/r50_2x_sk1", 50, 2, True, 140_306_048, 140, 81.3, README),
    ("simclrv2/finetuned_100pct/r101_1x_sk0", 101, 1, False, 42_500_160, 43, 78.2, README),
    ("simclrv2/finetuned_100pct/r101_1x_sk1", 101, 1, True, 64_662_304, 65, 80.6, README),
    ("simclrv2/finetuned_100pct/r101_2x_sk0", 101, 2, False, 169_771_136, 170, 80.7, README),
    ("simclrv2/finetuned_100pct/r101_2x_sk1", 101, 2, True, 257_132_224, 257, 82.4, README),
    ("simclrv2/finetuned_100pct/r152_1x_sk0", 152, 1, False, 58_143_808, 58, 79.3, README),
    ("simclrv2/finetuned_100pct/r152_1x_sk1", 152, 1, True, 88_940_896, 89, 81.3, README),
    ("simclrv2/finetuned_100pct/r152_2x_sk0", 152, 2, False, 232_253_568, 233, 81.1, README),
    ("simclrv2/finetuned_100pct/r152_2x_sk1", 152, 2, True, 353_398_528, 354, 82.9, README),
    ("simclrv2/finetuned_100pct/r152_3x_sk1", 152, 3, True, 794_704_160, 795, 83.1, PAPER),
    ("simclrv2/supervised/r50_1x_sk0", 50, 1, False, 23_508_032, 24, 76.6, README),
    ("simclrv2/supervised/r50_1x_sk1", 50, 1, True, 35_215_584, 35, 78.5, README),
    ("simclrv2/supervised/r50_2x_sk0", 50, 2, False, 93_907_072, 94, 77.8, README),
    ("simclrv2/supervised/r50_2x_sk1", 50, 2, True, 140_306_048, 140, 79.3, README),
    ("simclrv2/supervised/r101_1x_sk0", 101, 1, False, 42_500_160, 43, 78.0, README),
    ("simclrv2/supervised/r101_1x_sk1", 101, 1, True, 64_662_304, 65, 79.6, README),
    ("simclrv2/supervised/r101_2x_sk0", 101, 2, False, 169_771_136, 170, 78.9, README),
    ("simclrv2/supervised/r101_2x_sk1", 101, 2, True, 257_132_224, 257, 80.1, README),
    ("simclrv2/supervised/r152_1x_sk0", 152, 1, False, 58_143_808, 58, 78.3, README),
    ("simclrv2/supervised/r152_1x_sk1", 152, 1, True, 88_940_896, 89, 79.9, README),
    ("simclrv2/supervised/r152_2x_sk0", 152, 2, False, 232_253_568, 233, 79.1, README),
    ("simclrv2/supervised/r152_2x_sk1", 152, 2, True, 353_398_528, 354, 80.4, README),
    ("simclrv2/supervised/r152_3x_sk1", 152, 3, True, 794_704_160, 795, 80.5, PAPER),
    ("simclrv1/pretrain/1x", 50, 1, False, 23_508_032, 24, 69.1, README),
    ("simclrv1/pretrain/2x", 50, 2, False, 93_907_072, 94, 74.2, README),
    ("simclrv1/pretrain/4x", 50, 4, False, 375_378_176, 375, 76.6, README),
    ("simclrv1/finetune_10pct/1x", 50, 1, False, 23_508_032, 24, 65.8, COLAB),
    ("simclrv1/finetune_10pct/2x", 50, 2, False, 93_907_072, 94, 71.6, COLAB),
    ("simclrv1/finetune_10pct/4x", 50, 4, False, 375_378_176, 375, 74.5, COLAB),
    ("simclrv1/finetune_100pct/1x", 50, 1, False, 23_508_032, 24, 75.6, COLAB),
    ("simclrv1/finetune_100pct/2x", 50, 2, False, 93_907_072, 94, 79.2, COLAB),
    ("simclrv1/finetune_100pct/4x", 50, 4, False, 375_378_176, 375, 80.8, COLAB),
)

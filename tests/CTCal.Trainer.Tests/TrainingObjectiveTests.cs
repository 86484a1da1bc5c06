using CTCal.Core.Models;
using CTCal.Trainer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>The family-neutral training objective (<see cref="ITrainingObjective"/>), fractional timesteps, text conditioning and the transformer LoRA component.</summary>
public sealed class TrainingObjectiveTests
{
    [Fact]
    public void TheDdpmObjectiveKeepsIntegerTimestepsAndTheRequestedTeacher()
    {
        using var scope = NewDisposeScope();
        using var model = new ToyDiffusionModel();
        var objective = Assert.IsType<DiffusionObjective>(model.CreateObjective(new TrainingOptions { MinSnrGamma = 5 }));
        Assert.Equal(5, objective.MinSnrGamma);
        Assert.Equal(0, objective.TeacherTimestep(0, TeacherSampling.Fixed));
        Assert.Equal(250, objective.TeacherTimestep(250, TeacherSampling.Fixed));
        Assert.Throws<ArgumentException>(() => objective.TeacherTimestep(0, TeacherSampling.Below));
        using var generator = new Generator(1);
        var teacher = objective.TeacherTimesteps(tensor(new[] { 5L, 700L }), 250, TeacherSampling.Fixed, generator);
        Assert.Equal([250L, 250L], teacher.data<long>().ToArray());
        var t = objective.Timesteps([0, 999], CPU);
        Assert.Equal(ScalarType.Int64, t.dtype);
        Assert.Equal([0L, 999L], t.data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => objective.Timesteps([1.5], CPU));
        Assert.Throws<ArgumentException>(() => objective.Timesteps([1000], CPU));
    }

    [Fact]
    public void TheFlowObjectiveUsesFloatTimestepsAndSigmaEqualsTOverT()
    {
        using var scope = NewDisposeScope();
        var objective = new FlowTrainingObjective(new FlowMatchingOptions { Shift = 3.0 });
        using var generator = new Generator(4);
        var t = objective.SampleTimesteps(6, CPU, generator);
        Assert.Equal(ScalarType.Float32, t.dtype);
        Assert.All(t.data<float>().ToArray(), v => Assert.InRange(v, 0f, 1000f));

        // Same draws as the flow math itself.
        using var again = new Generator(4);
        var draw = objective.Flow.SampleTimesteps(6, CPU, again);
        Assert.True(t.eq(draw.Timesteps).all().item<bool>());
        Assert.True(allclose(objective.Sigmas(t), draw.Sigmas, rtol: 1e-6, atol: 1e-7));

        var x0 = randn(new long[] { 6, 2, 3, 3 }, generator: generator);
        var noise = randn(new long[] { 6, 2, 3, 3 }, generator: generator);
        var expected = FlowMatchingObjective.AddNoise(x0, noise, objective.Sigmas(t));
        Assert.True(objective.AddNoise(x0, noise, t).eq(expected).all().item<bool>());
        Assert.True(objective.Target(x0, noise, t).eq(noise - x0).all().item<bool>());

        // The teacher: --teacher-t, at least the smallest training timestep (sigma_min * 1000, about 3 for shift 3).
        double smallest = objective.SmallestTrainingTimestep;
        Assert.InRange(smallest, 2.5, 3.5);
        Assert.Equal(smallest, objective.TeacherTimestep(0, TeacherSampling.Fixed));
        Assert.Equal(100, objective.TeacherTimestep(100, TeacherSampling.Fixed));
        Assert.Equal(smallest, objective.TeacherTimestep(100, TeacherSampling.Below));
        Assert.Throws<ArgumentOutOfRangeException>(() => objective.TeacherTimestep(1000, TeacherSampling.Fixed));
        var teacher = objective.TeacherTimesteps(t, 0, TeacherSampling.Fixed, generator);
        Assert.Equal(ScalarType.Float32, teacher.dtype);
        Assert.All(teacher.data<float>().ToArray(), v => Assert.Equal((float)smallest, v));
    }

    [Theory]
    [InlineData("logit_normal")]
    [InlineData("mode")]
    [InlineData("none")]
    public void TheBelowTeacherDrawsTrainingTimestepsUnderEachStudentFromTheTrainingDistribution(string scheme)
    {
        using var scope = NewDisposeScope();
        var objective = new FlowTrainingObjective(new FlowMatchingOptions { Shift = 3.0, WeightingScheme = scheme });
        var p = objective.IndexProbabilities();
        Assert.Equal(1.0, p.Sum(), 6);
        Assert.All(p, v => Assert.True(v >= 0));

        var table = objective.Flow.TrainingTimesteps;
        var students = tensor(new[] { table[0], table[10], table[500], table[998] });
        Assert.Equal([0, 10, 500, 998], new[] { table[0], table[10], table[500], table[998] }.Select(v => objective.IndexOf(v)));
        using var a = new Generator(9);
        var teachers = objective.TeacherTimesteps(students, 0, TeacherSampling.Below, a).data<float>().ToArray();
        using var b = new Generator(9);
        Assert.Equal(teachers, objective.TeacherTimesteps(students, 0, TeacherSampling.Below, b).data<float>().ToArray()); // seeded
        var s = students.data<float>().ToArray();
        for (int i = 0; i < s.Length; i++)
        {
            Assert.True(teachers[i] < s[i], $"teacher {teachers[i]} is not below student {s[i]}");
            Assert.Contains(teachers[i], table);
        }
        Assert.Equal(table[999], teachers[3]); // the only training timestep below the second smallest

        // From the student at the top of the table, the teacher follows the training distribution (all indices after 0):
        // the mean index of many draws is the distribution's.
        using var many = new Generator(3);
        var draws = objective.TeacherTimesteps(full(new long[] { 4000 }, table[0]), 0, TeacherSampling.Below, many).data<float>().ToArray();
        double meanIndex = draws.Average(v => (double)objective.IndexOf(v));
        double expected = Enumerable.Range(1, 999).Sum(i => i * p[i]) / Enumerable.Range(1, 999).Sum(i => p[i]);
        Assert.InRange(meanIndex, expected - 15, expected + 15);
    }

    [Fact]
    public void CalibratedSamplesCompareFractionalTimesteps()
    {
        Assert.Equal([1], TrainingRun.CalibratedSamples([1, 1, 0], [3.0, 3.5, 900.25], teacherTimestep: 3.0));
        Assert.Equal([0.5, 7.0], TrainingRun.TimestepValues(tensor(new[] { 0.5f, 7f })));
        Assert.Equal([3.0, 999.0], TrainingRun.TimestepValues(tensor(new[] { 3L, 999L })));
    }

    [Fact]
    public void TextConditioningMapsBothTensorsAlongTheBatch()
    {
        using var scope = NewDisposeScope();
        var text = new TextConditioning(arange(2 * 3 * 4).reshape(2, 3, 4).to(ScalarType.Float32), arange(2 * 5).reshape(2, 5).to(ScalarType.Float32));
        var second = text.Select(tensor(new[] { 1L }));
        Assert.Equal(new long[] { 1, 3, 4 }, second.Hidden.shape);
        Assert.Equal(new long[] { 1, 5 }, second.Pooled!.shape);
        Assert.Equal(5f, second.Pooled[0, 0].item<float>());
        var repeated = second.Expand(3);
        Assert.Equal(new long[] { 3, 3, 4 }, repeated.Hidden.shape);
        Assert.Equal(new long[] { 3, 5 }, repeated.Pooled!.shape);
        var both = TextConditioning.Cat([text, second]);
        Assert.Equal(3, both.Hidden.shape[0]);
        Assert.Equal(3, both.Pooled!.shape[0]);
        Assert.Null(new TextConditioning(text.Hidden).Detach().Pooled);
        Assert.Throws<ArgumentException>(() => TextConditioning.Cat([text, new TextConditioning(text.Hidden)]));
    }

    [Fact]
    public void LoraKeysReadAndWriteTheTransformerComponentInDottedSpellingsOnly()
    {
        Assert.True(LoraKeys.TryParse("transformer.transformer_blocks.0.attn.add_q_proj.lora_A.weight", out var peft));
        Assert.Equal((LoraKeys.Transformer, "transformer_blocks.0.attn.add_q_proj", LoraPart.Down, LoraSpelling.Peft), (peft.Component, peft.Module, peft.Part, peft.Spelling));
        Assert.True(LoraKeys.TryParse("transformer.transformer_blocks.1.attn.to_out.0.lora.up.weight", out var diffusers));
        Assert.Equal((LoraKeys.Transformer, "transformer_blocks.1.attn.to_out.0", LoraSpelling.Diffusers), (diffusers.Component, diffusers.Module, diffusers.Spelling));
        Assert.Equal("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", LoraKeys.Format(LoraKeys.Transformer, "transformer_blocks.0.attn.to_q", LoraPart.Up, LoraSpelling.Peft));
        Assert.Throws<ArgumentException>(() => LoraKeys.Format(LoraKeys.Transformer, "transformer_blocks.0.attn.to_q", LoraPart.Up, LoraSpelling.Kohya));
        // UNet keys are unchanged: unprefixed dotted keys still belong to the UNet.
        Assert.True(LoraKeys.TryParse("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.lora_A.weight", out var unet));
        Assert.Equal(LoraKeys.UNet, unet.Component);
        Assert.Equal(["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"], LoraOptions.TransformerTargets);
    }
}

"""Distillation losses, each written once. Shapes: logits [batch, labels]; gold [batch] with -1 for
sentences without a gold intent (augmented ones)."""


def soft_target_loss(student_logits, teacher_logits, kind: str, temperature: float):
    """``mse``: mean squared difference of logits (Tang et al. 2019).
    ``kl``: KL(softmax(t/T) || softmax(s/T)) * T**2, averaged over the batch (Hinton et al. 2015)."""
    import tensorflow as tf

    if kind == "mse":
        return tf.reduce_mean(tf.square(student_logits - teacher_logits))
    t = temperature
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / t)  # [batch, labels]
    student_log_probs = tf.nn.log_softmax(student_logits / t)  # [batch, labels]
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)  # [batch]
    return tf.reduce_mean(kl) * t * t


def hard_label_loss(student_logits, gold):
    """Cross-entropy with the gold intent, averaged over the sentences that have one (0 if none do)."""
    import tensorflow as tf

    has_gold = tf.cast(gold >= 0, tf.float32)  # [batch]
    per_sentence = tf.keras.losses.sparse_categorical_crossentropy(tf.maximum(gold, 0), student_logits, from_logits=True)
    return tf.reduce_sum(per_sentence * has_gold) / tf.maximum(tf.reduce_sum(has_gold), 1.0)


def distillation_loss(student_logits, teacher_logits, gold, kind: str, temperature: float, alpha: float):
    """``alpha`` * hard-label loss + (1 - ``alpha``) * soft-target loss."""
    soft = soft_target_loss(student_logits, teacher_logits, kind, temperature)
    if alpha == 0.0:
        return soft
    return alpha * hard_label_loss(student_logits, gold) + (1.0 - alpha) * soft


def hidden_state_loss(student_states, teacher_states, projection, mask, pairs):
    """TinyBERT's hidden-state loss: MSE of projected student states [batch, length, hs] against
    teacher states [batch, length, ht] for each (student index, teacher index) pair, padding excluded."""
    import tensorflow as tf

    weights = tf.cast(mask, tf.float32)[:, :, None]  # [batch, length, 1]
    total = 0.0
    for s, t in pairs:
        squared = tf.square(projection(student_states[s]) - teacher_states[t]) * weights
        total += tf.reduce_sum(squared) / (tf.reduce_sum(weights) * tf.cast(tf.shape(teacher_states[t])[-1], tf.float32))
    return total / len(pairs)


def attention_loss(student_attentions, teacher_attentions, mask, pairs):
    """TinyBERT's attention loss on head-averaged attention maps [batch, length, length] (student and
    teacher may have different head counts), padding excluded on both axes."""
    import tensorflow as tf

    m = tf.cast(mask, tf.float32)
    weights = m[:, :, None] * m[:, None, :]  # [batch, length, length]
    total = 0.0
    for s, t in pairs:
        student_map = tf.reduce_mean(student_attentions[s], axis=1)  # [batch, length, length]
        teacher_map = tf.reduce_mean(teacher_attentions[t], axis=1)
        total += tf.reduce_sum(tf.square(student_map - teacher_map) * weights) / tf.reduce_sum(weights)
    return total / len(pairs)

package modelgen

// trainingText is the built-in English text the fixture tokenizer learns its
// merges from (written for this project; any fixed text would do).
const trainingText = `The small model in this directory was made by a program, not trained on any data. ` +
	`Its weights are random numbers drawn from a seed, so the same seed always gives the same files. ` +
	`It exists so that the tests of the pruning tool can run in a few seconds on any machine, ` +
	`without downloading anything and without a graphics card. ` +
	`A language model reads a piece of text as a list of tokens, and each token is a number. ` +
	`The tokenizer splits the text into pieces that it has seen often, and when it meets a letter ` +
	`that it does not know, it falls back to the bytes of that letter. ` +
	`Every word here starts with a special mark that stands for the space in front of it. ` +
	`In the morning the river was cold and clear, and the birds were singing in the trees near the water. ` +
	`The children walked to the school on the other side of the hill, talking about the weather and the games ` +
	`they would play in the afternoon. Their teacher had promised them a story about the sea, ` +
	`where the ships sailed for many days and the sailors watched the stars to find their way home. ` +
	`Pruning removes the weights that matter least. The simplest method looks only at the size of each weight ` +
	`and sets the smallest ones to zero. A better method also looks at how large the inputs of each weight are, ` +
	`because a small weight that meets a large input can still change the output a great deal. ` +
	`Half of the weights in every row can often be removed while the model still writes sensible text. ` +
	`In the pattern called two out of four, every group of four weights keeps only two of them, ` +
	`and some processors can then multiply the matrix almost twice as fast. ` +
	`The numbers 2024, 365 and 3.14 appear here only to give the tokenizer some digits to learn. ` +
	`What would you do with a faster model? Perhaps answer more questions, or run it on a smaller computer. ` +
	`The evening came slowly over the fields, and the farmers went home to eat their supper with their families. ` +
	`The stories they told at the table were about the old days, when the winters were long and the summers short. ` +
	`A tokenizer that has learned more pieces writes shorter lists of numbers for the same text. ` +
	`The people of the town liked to walk along the river in the evening, when the light was soft and the air was warm. ` +
	`Some of them carried books, some carried bread for the ducks, and some only watched the water moving past the old stone bridge. ` +
	`On the other side of the bridge there was a market where the farmers sold apples, cheese, eggs and honey. ` +
	`The market opened early in the morning and closed when the last farmer had sold the last basket of apples. ` +
	`Each layer of the model is pruned in turn: the inputs of the layer are collected, the scores of the weights are computed, ` +
	`the lowest scores in every row are set to zero, and the pruned layer then computes the inputs of the next layer. ` +
	`The scores of the weights in a row are compared with each other, never with the scores of another row. ` +
	`When the work is done, the tool writes the pruned weights, a report of what it did, and a copy of the tokenizer. ` +
	`Nothing in this text is important; it is here so that the merges are the same on every machine, ` +
	`in every test, and for every seed.`
